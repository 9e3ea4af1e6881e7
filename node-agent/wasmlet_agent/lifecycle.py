"""One explicit lifecycle per instance: the legal moves between states, and scale-down order.

The states themselves are part of the placement-status contract (wasmlet.api.placements).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wasmlet.api.placements import InstanceState as State

__all__ = ["IllegalTransition", "State", "check_transition", "scale_down_order"]


_LEGAL: dict[State, frozenset[State]] = {
    State.PULLING: frozenset({State.COMPILING, State.BACK_OFF, State.FAILED, State.STOPPED}),
    State.COMPILING: frozenset({State.STARTING, State.BACK_OFF, State.FAILED, State.STOPPED}),
    State.STARTING: frozenset(
        {State.RUNNING, State.EXITED, State.TRAPPED, State.BACK_OFF, State.FAILED, State.STOPPED}
    ),
    # BackOff straight from Running: the agent failed around a run (retried, never lost).
    State.RUNNING: frozenset({State.EXITED, State.TRAPPED, State.BACK_OFF, State.STOPPED}),
    State.EXITED: frozenset({State.BACK_OFF, State.COMPLETED, State.FAILED, State.STOPPED}),
    State.TRAPPED: frozenset({State.BACK_OFF, State.FAILED, State.STOPPED}),
    State.BACK_OFF: frozenset({State.PULLING, State.STARTING, State.STOPPED}),
    State.COMPLETED: frozenset({State.STOPPED}),
    State.FAILED: frozenset({State.STOPPED}),
    State.STOPPED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(current: State, new: State) -> State:
    """Return new if moving there from current is legal, else raise IllegalTransition."""
    if new not in _LEGAL[current]:
        raise IllegalTransition(f"instance cannot go from {current} to {new}")
    return new


class Instance(Protocol):
    """What scaling decisions read of an instance's status."""

    @property
    def name(self) -> str: ...
    @property
    def ready(self) -> bool: ...
    @property
    def started_at(self) -> float | None: ...


def scale_down_order(instances: Sequence[Instance]) -> list[str]:
    """Names of instances in the order to stop them when scaling down.

    Like a ReplicaSet: instances that are not ready go first, then the most recently
    started, so scaling down (and a rollover) keeps the ready instances that have proved
    themselves longest; among equals, the last created goes first.
    """

    def rank(item: tuple[int, Instance]) -> tuple[bool, float, int]:
        index, inst = item
        started = inst.started_at if inst.started_at is not None else float("inf")
        return (inst.ready, -started, -index)

    return [inst.name for _, inst in sorted(enumerate(instances), key=rank)]
