"""The instance lifecycle: legal transitions pass, illegal ones raise."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from wasmlet_agent.lifecycle import (
    IllegalTransition,
    State,
    check_transition,
    scale_down_order,
)

HAPPY_PATH = [
    State.PULLING,
    State.COMPILING,
    State.STARTING,
    State.RUNNING,
    State.EXITED,
    State.BACK_OFF,
    State.STARTING,
    State.RUNNING,
    State.TRAPPED,
    State.FAILED,
    State.STOPPED,
]


def test_happy_path_is_legal() -> None:
    state = HAPPY_PATH[0]
    for new in HAPPY_PATH[1:]:
        state = check_transition(state, new)
    assert state is State.STOPPED


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (State.PULLING, State.RUNNING),  # cannot run what was not compiled
        (State.RUNNING, State.PULLING),
        (State.STOPPED, State.STARTING),  # stopped is final
        (State.COMPLETED, State.STARTING),
        (State.EXITED, State.RUNNING),  # a restart goes through BackOff
    ],
)
def test_illegal_transition_raises(current: State, new: State) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current} to {new}"):
        check_transition(current, new)


@dataclass
class Inst:
    name: str
    ready: bool
    started_at: float | None


def test_scale_down_stops_not_ready_instances_first_then_the_newest() -> None:
    instances = [
        Inst("old-running", True, 100.0),
        Inst("crashing", False, 150.0),
        Inst("new-running", True, 200.0),
        Inst("pulling", False, None),
        Inst("completed", True, 50.0),
    ]
    assert scale_down_order(instances) == [
        "pulling",
        "crashing",
        "new-running",
        "old-running",
        "completed",
    ]


def test_scale_down_ties_stop_the_last_created_first() -> None:
    assert scale_down_order([Inst(f"i{n}", False, None) for n in range(3)]) == ["i2", "i1", "i0"]
