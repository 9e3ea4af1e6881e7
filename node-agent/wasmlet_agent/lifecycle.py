"""One explicit lifecycle per instance: states, legal transitions, and reasons."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol


class State(StrEnum):
    PULLING = "Pulling"
    COMPILING = "Compiling"
    STARTING = "Starting"
    RUNNING = "Running"
    EXITED = "Exited"
    TRAPPED = "Trapped"
    BACK_OFF = "BackOff"
    COMPLETED = "Completed"  # ended successfully and will not be started again
    FAILED = "Failed"  # will not be started again (restartPolicy, or a permanent error)
    STOPPED = "Stopped"  # stopped by the agent (scale down, delete, shutdown)


class Reason(StrEnum):
    PULLED = "Pulled"
    PULL_FAILED = "PullFailed"
    DIGEST_MISMATCH = "DigestMismatch"
    NOT_WASM = "NotWasm"
    INVALID_MODULE = "InvalidModule"
    COMPLETED = "Completed"
    ERROR = "Error"
    TRAPPED = "Trapped"
    TIMED_OUT = "TimedOut"
    OUT_OF_MEMORY = "OutOfMemory"
    OUT_OF_FUEL = "OutOfFuel"
    CONFIG_ERROR = "ConfigError"
    EPHEMERAL_STORAGE = "EphemeralStorageExceeded"  # an emptyDir outgrew its sizeLimit
    STOPPED = "Stopped"


_LEGAL: dict[State, frozenset[State]] = {
    State.PULLING: frozenset({State.COMPILING, State.BACK_OFF, State.FAILED, State.STOPPED}),
    State.COMPILING: frozenset({State.STARTING, State.BACK_OFF, State.FAILED, State.STOPPED}),
    State.STARTING: frozenset(
        {State.RUNNING, State.EXITED, State.TRAPPED, State.BACK_OFF, State.FAILED, State.STOPPED}
    ),
    State.RUNNING: frozenset({State.EXITED, State.TRAPPED, State.STOPPED}),
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


def is_ready(state: State) -> bool:
    return state is State.RUNNING


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
