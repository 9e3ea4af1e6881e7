"""The instance lifecycle: legal transitions pass, illegal ones raise."""

from __future__ import annotations

import pytest

from wasmlet_agent.lifecycle import IllegalTransition, State, check_transition, is_ready

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


def test_only_running_is_ready() -> None:
    assert [s for s in State if is_ready(s)] == [State.RUNNING]
