"""Progressing, Available and the serving/target module during rollouts (Deployment's model).

The stored status is the only memory: each step below writes conditions with
merge_conditions and feeds them back as `Previous`, as the operator does through the API
server, so "an operator restart keeps the deadline" is the same path as any reconcile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wasmlet.api.placements import rfc3339
from wasmlet_operator.conditions import Condition, merge_conditions
from wasmlet_operator.placement import Placement
from wasmlet_operator.rollout import Counts, ProgressReason, progress
from wasmlet_operator.status import (
    PlacementReport,
    Previous,
    aggregate,
    available,
    modules,
    recheck_after,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
OLD = "reg/web:v1"
NEW = "reg/web:v2-missing"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
PULL_FAILED = [{"type": "Ready", "status": "False", "reason": "ModuleNotFound",
                "message": "module reg/web:v2-missing: tag not found"}]  # fmt: skip


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def prog(
    reason: ProgressReason | str, since: datetime, generation: int = 1, status: str = "True"
) -> dict[str, Any]:
    return {"type": "Progressing", "status": status, "reason": str(reason),
            "lastUpdateTime": rfc3339(since), "observedGeneration": generation}  # fmt: skip


@dataclass(frozen=True)
class Row:
    name: str
    complete: bool
    counts: Counts
    before: Counts | None
    previous: dict[str, Any] | None
    now: datetime
    expected: tuple[str, ProgressReason, datetime]
    generation: int = 1


STUCK = Counts(ready=2, updated=0, existing=3)  # 2 old serving, 1 new not ready
ROWS = [
    Row("first reconcile of a new app starts the clock", False, Counts(0, 0, 2), None, None,
        at(0), ("True", ProgressReason.IN_PROGRESS, at(0))),
    Row("stuck within the deadline keeps the clock", False, STUCK, STUCK,
        prog(ProgressReason.IN_PROGRESS, at(0)), at(599),
        ("True", ProgressReason.IN_PROGRESS, at(0))),
    Row("stuck past the deadline", False, STUCK, STUCK,
        prog(ProgressReason.IN_PROGRESS, at(0)), at(600),
        ("False", ProgressReason.DEADLINE_EXCEEDED, at(0))),
    Row("exceeded stays exceeded without progress", False, STUCK, STUCK,
        prog(ProgressReason.DEADLINE_EXCEEDED, at(0), status="False"), at(5000),
        ("False", ProgressReason.DEADLINE_EXCEEDED, at(0))),
    Row("an updated instance ready is progress: the clock restarts", False,
        Counts(2, 1, 3), STUCK, prog(ProgressReason.IN_PROGRESS, at(0)), at(599),
        ("True", ProgressReason.IN_PROGRESS, at(599))),
    Row("progress after the deadline un-sticks it", False, Counts(2, 1, 3), STUCK,
        prog(ProgressReason.DEADLINE_EXCEEDED, at(0), status="False"), at(900),
        ("True", ProgressReason.IN_PROGRESS, at(900))),
    Row("an old instance gone is progress", False, Counts(2, 1, 2), Counts(2, 1, 3),
        prog(ProgressReason.IN_PROGRESS, at(0)), at(300),
        ("True", ProgressReason.IN_PROGRESS, at(300))),
    Row("fewer ready alone is no progress", False, Counts(1, 0, 3), STUCK,
        prog(ProgressReason.IN_PROGRESS, at(0)), at(700),
        ("False", ProgressReason.DEADLINE_EXCEEDED, at(0))),
    Row("a new spec (generation) starts a new clock", False, STUCK, STUCK,
        prog(ProgressReason.DEADLINE_EXCEEDED, at(0), generation=1, status="False"), at(900),
        ("True", ProgressReason.IN_PROGRESS, at(900)), generation=2),
    Row("losing convergence starts the clock", False, Counts(1, 1, 2), Counts(2, 2, 2),
        prog(ProgressReason.COMPLETE, at(0)), at(5000),
        ("True", ProgressReason.IN_PROGRESS, at(5000))),
    Row("converged: True RolloutComplete (not False)", True, Counts(2, 2, 2), Counts(2, 1, 3),
        prog(ProgressReason.IN_PROGRESS, at(0)), at(30),
        ("True", ProgressReason.COMPLETE, at(30))),
    Row("converged stays put: its time does not move", True, Counts(2, 2, 2), Counts(2, 2, 2),
        prog(ProgressReason.COMPLETE, at(30)), at(5000),
        ("True", ProgressReason.COMPLETE, at(30))),
    Row("converged after the deadline", True, Counts(2, 2, 2), STUCK,
        prog(ProgressReason.DEADLINE_EXCEEDED, at(0), status="False"), at(5000),
        ("True", ProgressReason.COMPLETE, at(5000))),
    Row("scaled to zero is complete", True, Counts(0, 0, 0), Counts(2, 2, 2),
        prog(ProgressReason.COMPLETE, at(0), generation=1), at(10),
        ("True", ProgressReason.COMPLETE, at(0)), generation=2),
    Row("an unreadable clock restarts rather than times out", False, STUCK, STUCK,
        {**prog(ProgressReason.IN_PROGRESS, at(0)), "lastUpdateTime": "yesterday"}, at(5000),
        ("True", ProgressReason.IN_PROGRESS, at(5000))),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_progress(row: Row) -> None:
    got = progress(row.complete, row.counts, row.before, row.previous, row.generation, 600, row.now)
    assert (got.status, got.reason, got.since) == row.expected


# --- the whole status through aggregate, over several reconciles ----------------------------


def old_node(ready: int = 1) -> PlacementReport:
    """A node not moved to r2 yet: its instance runs r1 and reports r1's digest."""
    status = {"observedGeneration": 1, "replicas": ready, "readyReplicas": ready,
              "updatedReplicas": ready, "moduleDigest": D1}  # fmt: skip
    return PlacementReport("a", 1, "r1", status, generation=1)


def switched_node(seen: bool, pulled: str | None = None) -> PlacementReport:
    """A node moved to r2: its old instance still serves while r2 pulls (or fails to)."""
    if not seen:  # the agent has not written status for generation 2 yet: r1's digest
        status = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
                  "updatedReplicas": 1, "moduleDigest": D1}  # fmt: skip
        return PlacementReport("b", 1, "r2", status, generation=2)
    if pulled is None:
        status = {"observedGeneration": 2, "replicas": 2, "readyReplicas": 1,
                  "updatedReplicas": 0, "conditions": PULL_FAILED}  # fmt: skip
    else:
        status = {"observedGeneration": 2, "replicas": 1, "readyReplicas": 1,
                  "updatedReplicas": 1, "moduleDigest": pulled}  # fmt: skip
    return PlacementReport("b", 1, "r2", status, generation=2)


def reconcile(
    stored: dict[str, Any],
    reports: Sequence[PlacementReport],
    now: datetime,
    reference: str = NEW,
    generation: int = 2,
    deadline: int = 600,
) -> tuple[dict[str, Any], dict[str, Condition]]:
    """One reconcile's status, merged over `stored` as the operator writes it."""
    fields, conds = aggregate(
        "web", 2, Placement({"a": 1, "b": 1}), reports, reference, "r2",
        max_unavailable="25%", deadline_seconds=deadline,
        previous=Previous(stored, generation, now),
    )  # fmt: skip
    merged = merge_conditions(stored.get("conditions") or [], conds, rfc3339(now), generation)
    new = {**fields, "observedGeneration": generation, "conditions": merged}
    return {k: v for k, v in new.items() if v is not None}, {c.type: c for c in conds}


CONVERGED_V1 = {
    "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "module": f"{OLD}@{D1}",
    "targetModule": f"{OLD}@{D1}", "observedGeneration": 1,
    "conditions": [prog(ProgressReason.COMPLETE, at(-1000))],
}  # fmt: skip


def test_a_stuck_rollout_stays_ready_and_says_so_after_the_deadline() -> None:
    # The spec moved to a missing tag; node b is switched, its agent has not reported yet.
    stored, c = reconcile(CONVERGED_V1, [old_node(), switched_node(seen=False)], at(0))
    assert stored["module"] == f"{OLD}@{D1}"  # what serves: v1, with v1's digest
    assert stored["targetModule"] == NEW  # never NEW@D1: b's digest is still r1's
    assert (c["Progressing"].status, c["Progressing"].reason) == ("True", "RolloutInProgress")
    # b's agent reports the pull failure; its old instance keeps serving.
    stored, c = reconcile(stored, [old_node(), switched_node(seen=True)], at(1))
    assert (c["Ready"].status, c["Available"].status) == ("True", "True")
    assert (c["Degraded"].status, c["Degraded"].reason) == ("True", "ModuleNotFound")
    assert c["Progressing"].status == "True"
    assert stored["ready"] == "2/2" and stored["targetModule"] == NEW
    assert stored["module"] == f"{OLD}@{D1}"
    assert recheck_after(list(c.values()), 600, at(1)) == 599
    # Past the deadline with no progress: Progressing=False, naming the failure.
    stored, c = reconcile(stored, [old_node(), switched_node(seen=True)], at(601))
    p = c["Progressing"]
    assert (p.status, p.reason) == ("False", "ProgressDeadlineExceeded")
    assert "no progress for 600s" in p.message and "tag not found" in p.message
    assert p.last_update == rfc3339(at(0))  # the last progress, not now
    assert (c["Ready"].status, c["Available"].status) == ("True", "True")
    assert c["Degraded"].reason == "ModuleNotFound"
    assert recheck_after(list(c.values()), 600, at(601)) is None
    # The tag is pushed: b's new instance is ready, then a is moved and converges.
    stored, c = reconcile(stored, [old_node(), switched_node(seen=True, pulled=D2)], at(700))
    assert c["Progressing"].reason == "RolloutInProgress"
    assert stored["targetModule"] == f"{NEW}@{D2}"
    assert stored["module"] == f"{OLD}@{D1}"  # old instance on a still serves
    moved = PlacementReport("a", 1, "r2", {"observedGeneration": 2, "replicas": 1,
                            "readyReplicas": 1, "updatedReplicas": 1, "moduleDigest": D2},
                            generation=2)  # fmt: skip
    stored, c = reconcile(stored, [moved, switched_node(seen=True, pulled=D2)], at(710))
    assert (c["Progressing"].status, c["Progressing"].reason) == ("True", "RolloutComplete")
    assert stored["module"] == stored["targetModule"] == f"{NEW}@{D2}"
    assert c["Degraded"].status == "False"


def test_an_operator_restart_keeps_the_deadline() -> None:
    stuck = [old_node(), switched_node(seen=True)]
    stored, _ = reconcile(CONVERGED_V1, stuck, at(0))
    # A new operator process starts 500 s later: everything it knows is the stored status.
    stored, c = reconcile(stored, stuck, at(500))
    assert c["Progressing"].status == "True"
    assert recheck_after(list(c.values()), 600, at(500)) == 100
    stored, c = reconcile(stored, stuck, at(600))
    assert c["Progressing"].reason == "ProgressDeadlineExceeded"
    # And another restart does not forget it either.
    _, c = reconcile(stored, stuck, at(9000))
    assert c["Progressing"].reason == "ProgressDeadlineExceeded"


def test_past_the_deadline_with_no_failure_is_degraded_by_the_deadline() -> None:
    slow = PlacementReport("b", 1, "r2", {"observedGeneration": 2, "replicas": 2,
                           "readyReplicas": 1, "updatedReplicas": 0}, generation=2)  # fmt: skip
    stored, _ = reconcile(CONVERGED_V1, [old_node(), slow], at(0), deadline=30)
    stored, c = reconcile(stored, [old_node(), slow], at(30), deadline=30)
    assert (c["Degraded"].status, c["Degraded"].reason) == ("True", "ProgressDeadlineExceeded")
    assert "no progress for 30s (progressDeadlineSeconds)" in c["Degraded"].message


def test_scaled_to_zero_is_complete_and_serves_nothing() -> None:
    fields, conds = aggregate("web", 0, Placement({}), [], OLD, "r1",
                              previous=Previous(CONVERGED_V1, 2, at(0)))  # fmt: skip
    c = {x.type: x for x in conds}
    assert [(c[t].status, c[t].reason) for t in ("Ready", "Available", "Progressing")] == [
        ("True", "InstancesReady"), ("True", "MinimumInstancesAvailable"),
        ("True", "RolloutComplete"),
    ]  # fmt: skip
    assert fields["module"] is None and fields["targetModule"] == OLD


@pytest.mark.parametrize(
    ("desired", "ready", "max_unavailable", "status"),
    [
        (4, 3, "25%", "True"),  # 25% of 4 is 1
        (4, 2, "25%", "False"),
        (2, 1, "25%", "False"),  # 25% of 2 rounds down to 0, as a Deployment's does
        (2, 1, 1, "True"),
        (3, 0, "100%", "True"),
        (0, 0, 1, "True"),
    ],
)
def test_available_allows_max_unavailable(
    desired: int, ready: int, max_unavailable: int | str, status: str
) -> None:
    c = available(desired, ready, max_unavailable)
    assert c.status == status and f"maxUnavailable {max_unavailable}" in c.message


def test_modules_never_pair_a_reference_with_a_digest_it_did_not_resolve_to() -> None:
    two = [switched_node(seen=True, pulled=D1),
           PlacementReport("a", 1, "r2", {"observedGeneration": 2, "replicas": 1,
                           "readyReplicas": 1, "updatedReplicas": 1, "moduleDigest": D2},
                           generation=2)]  # fmt: skip
    # The tag moved between two nodes' pulls: the digest is not one thing, so none is named.
    assert modules(NEW, "r2", two, 2, 2, f"{OLD}@{D1}") == (NEW, NEW)
    # Nothing ready: nothing serves, whatever status said before.
    assert modules(NEW, "r2", [], 0, 0, f"{OLD}@{D1}") == (None, NEW)
    # Old and new both serving: status keeps the old until every ready instance is new.
    one = [old_node(), switched_node(seen=True, pulled=D2)]
    assert modules(NEW, "r2", one, 2, 1, f"{OLD}@{D1}") == (f"{OLD}@{D1}", f"{NEW}@{D2}")
