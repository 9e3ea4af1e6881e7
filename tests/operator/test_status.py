"""aggregate(): counts, the printer-column summary, selector and conditions."""

from __future__ import annotations

from wasmlet_operator.conditions import Condition, merge_conditions
from wasmlet_operator.placement import Placement, Shortfall
from wasmlet_operator.status import PlacementReport, aggregate


def report(node: str, replicas: int, ready: int, **extra: object) -> PlacementReport:
    status = {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": ready, **extra}
    return PlacementReport(node, replicas, "r1", status)


def by_type(conds: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conds}


def test_all_ready() -> None:
    status, conds = aggregate(
        "web", 3, Placement({"a": 2, "b": 1}), [report("a", 2, 2), report("b", 1, 1)], "m@d"
    )
    assert status["readyReplicas"] == 3 and status["ready"] == "3/3"
    assert status["selector"] == "wasmlet.dev/app=web"
    assert status["placements"] == [
        {"node": "a", "replicas": 2, "readyReplicas": 2},
        {"node": "b", "replicas": 1, "readyReplicas": 1},
    ]
    c = by_type(conds)
    assert [
        (c[t].status, c[t].reason) for t in ("Ready", "Available", "Progressing", "Degraded")
    ] == [
        ("True", "InstancesReady"),
        ("True", "MinimumInstancesAvailable"),
        ("True", "RolloutComplete"),  # a Deployment's semantics: converged is not False
        ("False", "AsExpected"),
    ]


def test_unplaceable_is_degraded_with_the_reason() -> None:
    p = Placement({}, 2, Shortfall.NO_MATCHING_NODES, "no ready node matches nodeSelector x=y")
    _, conds = aggregate("web", 2, p, [], "m")
    c = by_type(conds)
    assert c["Ready"].status == "False" and c["Ready"].reason == "NoMatchingNodes"
    assert c["Degraded"].status == "True" and "x=y" in c["Degraded"].message


def test_agent_failure_condition_surfaces() -> None:
    failing = report(
        "a",
        1,
        0,
        conditions=[
            {"type": "Ready", "status": "False", "reason": "PullFailed", "message": "unreachable"}
        ],
    )
    _, conds = aggregate("web", 1, Placement({"a": 1}), [failing], "m")
    c = by_type(conds)
    assert c["Ready"].reason == "PullFailed" and "node a: unreachable" in c["Ready"].message
    assert c["Degraded"].reason == "PullFailed"
    assert (c["Available"].status, c["Progressing"].status) == ("False", "True")


def test_lost_node_counts_nothing() -> None:
    lost = PlacementReport("a", 2, "r1", {"readyReplicas": 2, "replicas": 2}, node_ready=False)
    status, conds = aggregate("web", 2, Placement({"b": 2}), [lost], "m")
    assert status["readyReplicas"] == 0
    assert by_type(conds)["Progressing"].reason == "RolloutInProgress"


def test_merge_keeps_transition_time_when_status_is_unchanged() -> None:
    first = merge_conditions([], [Condition("Ready", "False", "X")], "t1", 1)
    same = merge_conditions(first, [Condition("Ready", "False", "Y")], "t2", 2)
    flipped = merge_conditions(same, [Condition("Ready", "True", "Z")], "t3", 2)
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["reason"] == "Y"
    assert flipped[0]["lastTransitionTime"] == "t3"
    assert flipped[0]["observedGeneration"] == 2


def test_old_revision_placements_are_not_updated() -> None:
    old = PlacementReport("a", 2, "r0", {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2})
    new = report("b", 2, 2)
    status, conds = aggregate("web", 4, Placement({"a": 2, "b": 2}), [old, new], "m", "r1")
    assert status["readyReplicas"] == 4 and status["updatedReplicas"] == 2
    assert by_type(conds)["Progressing"].reason == "RolloutInProgress"


def test_stale_status_counts_ready_but_not_updated() -> None:
    stale = PlacementReport(
        "a", 2, "r1", {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2},
        generation=2,
    )  # fmt: skip
    status, _ = aggregate("web", 2, Placement({"a": 2}), [stale], "m", "r1")
    assert status["readyReplicas"] == 2 and status["updatedReplicas"] == 0
