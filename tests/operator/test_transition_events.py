"""Which status transitions become Events (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from wasmlet_operator.conditions import Event, transition_events


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


STARTING = [cond("Ready", "False", "Starting"), cond("Progressing", "True", "RolloutInProgress")]
READY = [
    cond("Ready", "True", "AllReplicasReady", "1/1 ready"),
    cond("Progressing", "True", "RolloutComplete", "1/1 updated"),
]


@pytest.mark.parametrize(
    ("old", "new", "events"),
    [
        pytest.param([], STARTING, [], id="a new app: nothing yet"),
        pytest.param(STARTING, READY, [("Normal", "Ready", "1/1 ready")],
                     id="a new app's first start: Ready, not a rollout's end"),
        pytest.param(
            [READY[0], cond("Progressing", "True", "RolloutInProgress")],
            READY,
            [("Normal", "RolloutComplete", "1/1 updated")],
            id="a Ready app's rollout completes",
        ),
        pytest.param(
            READY,
            [cond("Ready", "True", "OtherReason", "x"), READY[1]],
            [],
            id="Ready stays True with another reason: no second Ready",
        ),
        pytest.param(
            READY,
            [cond("Ready", "False", "Unavailable"), cond("Degraded", "True", "PullFailed", "m")],
            [("Warning", "PullFailed", "m")],
            id="Degraded appears",
        ),
        pytest.param(
            STARTING,
            [STARTING[0], cond("Progressing", "False", "ProgressDeadlineExceeded", "stuck")],
            [("Warning", "ProgressDeadlineExceeded", "stuck")],
            id="a new app stuck past its deadline still warns",
        ),
        pytest.param(READY, READY, [], id="unchanged"),
    ],
)  # fmt: skip
def test_transition_events(
    old: list[dict[str, Any]], new: list[dict[str, Any]], events: list[Event]
) -> None:
    assert transition_events(old, new) == events
