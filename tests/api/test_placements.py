"""The placement-status contract: what agents write and the operator reads, as table tests."""

from __future__ import annotations

from typing import Any

import pytest

from wasmlet.api.placements import (
    AppReport,
    InstanceState,
    InstanceStatus,
    Reason,
    is_failure,
    placement_status,
    ready_condition,
    ready_failure,
    same_status,
    transition_time,
)

NOW, EARLIER = "2026-12-01T10:00:00Z", "2026-12-01T09:00:00Z"


def placement(replicas: int, generation: int = 3, ready: str | None = None) -> dict[str, Any]:
    status = {}
    if ready is not None:
        status = {"conditions": [{"type": "Ready", "status": ready,
                                  "lastTransitionTime": EARLIER}]}  # fmt: skip
    return {
        "metadata": {"name": "p", "namespace": "ns", "generation": generation},
        "spec": {"replicas": replicas, "app": "a"},
        "status": status,
    }


@pytest.mark.parametrize(
    ("desired", "updated", "problem", "want"),
    [
        (0, 0, None, ("True", Reason.SCALED_TO_ZERO)),
        (0, 0, ("Trapped", "boom"), ("True", Reason.SCALED_TO_ZERO)),
        (2, 2, None, ("True", Reason.INSTANCES_READY)),
        (2, 3, ("Trapped", "old revision"), ("True", Reason.INSTANCES_READY)),
        (2, 1, None, ("False", Reason.STARTING)),
        (2, 1, ("DigestMismatch", "bad"), ("False", "DigestMismatch")),
    ],
)
def test_ready_condition(
    desired: int, updated: int, problem: tuple[str, str] | None, want: tuple[str, str]
) -> None:
    status, reason, _ = ready_condition(desired, updated, problem)
    assert (status.value, str(reason)) == want


@pytest.mark.parametrize(
    ("previous", "status", "want"),
    [
        (None, "True", NOW),
        ({"status": "True", "lastTransitionTime": EARLIER}, "True", EARLIER),
        ({"status": "False", "lastTransitionTime": EARLIER}, "True", NOW),
        ({"status": "True"}, "True", NOW),  # no time recorded: now
    ],
)
def test_transition_time(previous: dict[str, str] | None, status: str, want: str) -> None:
    assert transition_time(previous, status, NOW) == want


@pytest.mark.parametrize(
    ("reason", "failure"),
    [
        (Reason.STARTING, False),
        (Reason.SCALED_TO_ZERO, False),
        (Reason.INSTANCES_READY, False),
        ("", False),
        (Reason.TRAPPED, True),
        (Reason.PORT_CONFLICT, True),
        (Reason.AGENT_ERROR, True),
        ("SomethingNew", True),  # an unknown reason is surfaced, not hidden
    ],
)
def test_is_failure(reason: str, failure: bool) -> None:
    assert is_failure(reason) is failure


def test_placement_status_from_a_report() -> None:
    rep = AppReport(("ns", "a"), "rev2", 2, replicas=3, ready=2, updated=1, digest="sha256:ab")
    rep.instances = [
        InstanceStatus("a-1", "rev2", InstanceState.RUNNING, started_at=1_800_000_000.0),
        InstanceStatus(
            "a-2",
            "rev2",
            InstanceState.BACK_OFF,
            restarts=2,
            exit_code=1,
            reason="Error",
            message="x" * 5000,
        ),
    ]
    rep.problem = ("Error", "exited with code 1")
    out = placement_status(placement(2, ready="False"), rep, NOW)
    assert (out["replicas"], out["readyReplicas"], out["updatedReplicas"]) == (3, 2, 1)
    assert out["observedGeneration"] == 3 and out["moduleDigest"] == "sha256:ab"
    (cond,) = out["conditions"]
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == (
        "False", "Error", EARLIER,
    )  # fmt: skip
    first, second = out["instances"]
    assert first == {"name": "a-1", "revision": "rev2", "state": "Running", "ready": True,
                     "restarts": 0, "startedAt": "2027-01-15T08:00:00Z"}  # fmt: skip
    assert second["exitCode"] == 1 and second["reason"] == "Error"
    assert len(second["message"]) == 1024 and not second["ready"]


def test_a_report_of_the_previous_revision_is_not_this_revisions() -> None:
    # The placement moved to rev2 while the agent's last report still describes rev1.
    moved = {**placement(1, generation=4), "spec": {"replicas": 1, "app": "a", "revision": "rev2"}}
    rep = AppReport(("ns", "a"), "rev1", 1, replicas=1, ready=1, updated=1, digest="sha256:ab")
    out = placement_status(moved, rep, NOW)
    assert out["observedGeneration"] == 4 and out["readyReplicas"] == 1
    assert (
        out["updatedReplicas"] == 0 and out["moduleDigest"] is None
    )  # null: a merge patch clears it
    assert out["conditions"][0]["status"] == "False"
    # Once the report is of rev2, its count and digest are this placement's.
    rep = AppReport(("ns", "a"), "rev2", 1, replicas=1, ready=1, updated=1, digest="sha256:cd")
    out = placement_status(moved, rep, NOW)
    assert out["updatedReplicas"] == 1 and out["moduleDigest"] == "sha256:cd"


def test_placement_status_before_any_report() -> None:
    out = placement_status(placement(2, ready="True"), None, NOW)
    assert (out["replicas"], out["readyReplicas"], out["instances"]) == (0, 0, [])
    (cond,) = out["conditions"]
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == (
        "False", "Starting", NOW,
    )  # fmt: skip
    assert out["moduleDigest"] is None


def test_same_status_ignores_only_transition_times() -> None:
    a = placement_status(placement(1), None, NOW)
    b = placement_status(placement(1), None, EARLIER)
    assert same_status(a, b)
    c = placement_status(placement(2), None, NOW)
    assert not same_status(a, c)


@pytest.mark.parametrize(
    ("conditions", "want"),
    [
        ([], None),
        ([{"type": "Ready", "status": "True", "reason": "InstancesReady"}], None),
        ([{"type": "Ready", "status": "False", "reason": "Starting"}], None),
        ([{"type": "Ready", "status": "False", "reason": "Trapped", "message": "m"}],
         ("Trapped", "m")),
        ([{"type": "Other", "status": "False", "reason": "Trapped"}], None),
    ],
)  # fmt: skip
def test_ready_failure(conditions: list[dict[str, str]], want: tuple[str, str] | None) -> None:
    assert ready_failure(conditions) == want


def test_a_running_instance_whose_readiness_check_fails_is_not_ready() -> None:
    failing = InstanceStatus(
        "a-1", "rev2", InstanceState.RUNNING, check_passed=False,
        reason="ReadinessCheckFailed", message="readiness check failed: x",
    )  # fmt: skip
    assert not failing.ready
    assert InstanceStatus("a-2", "rev2", InstanceState.RUNNING).ready
    assert not InstanceStatus("a-3", "rev2", InstanceState.BACK_OFF, check_passed=True).ready
    rep = AppReport(("ns", "a"), "rev2", 1, replicas=1, instances=[failing],
                    problem=("ReadinessCheckFailed", "readiness check failed: x"))  # fmt: skip
    out = placement_status(placement(1, ready="True"), rep, NOW)
    assert out["instances"][0]["state"] == "Running" and out["instances"][0]["ready"] is False
    (cond,) = out["conditions"]
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False", "ReadinessCheckFailed", "readiness check failed: x",
    )  # fmt: skip
