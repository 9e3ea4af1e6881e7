"""Autonomous nodes (edge): out of touch they keep their placements, reported Unknown and
out of readyReplicas; other nodes that stop heartbeating lose theirs as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wasmlet.api.constants import AUTONOMOUS_LABEL, NodeStatus
from wasmlet_operator.nodes import node_from, node_status
from wasmlet_operator.placement import Node, Shortfall, place
from wasmlet_operator.state import ClusterState
from wasmlet_operator.status import NODE_UNREACHABLE, PlacementReport, aggregate

AUTO = {AUTONOMOUS_LABEL: "true"}


@pytest.mark.parametrize(
    ("ready", "labels", "expected"),
    [
        (True, AUTO, NodeStatus.READY),
        (True, {}, NodeStatus.READY),
        (False, AUTO, NodeStatus.UNKNOWN),
        (False, {}, NodeStatus.LOST),
        (False, {AUTONOMOUS_LABEL: "yes"}, NodeStatus.LOST),  # only "true" counts
        (False, {AUTONOMOUS_LABEL: "false"}, NodeStatus.LOST),
    ],
)
def test_node_status(ready: bool, labels: dict[str, str], expected: NodeStatus) -> None:
    assert node_status(ready, labels) is expected
    node = node_from({"metadata": {"name": "n", "labels": labels}}, ready)
    assert node.held is (expected is NodeStatus.UNKNOWN)


def nodes(*specs: tuple[str, bool, bool]) -> list[Node]:
    """(name, ready, held)"""
    return [Node(name, ready=ready, held=held) for name, ready, held in specs]


# (case, replicas, nodes, current, expected counts, unplaced)
CASES: list[tuple[str, int, list[Node], dict[str, int], dict[str, int], int]] = [
    ("held node keeps its instances", 4,
     nodes(("edge", False, True), ("b", True, False)), {"edge": 2, "b": 2},
     {"edge": 2, "b": 2}, 0),
    ("lost node's instances move", 4,
     nodes(("gone", False, False), ("b", True, False)), {"gone": 2, "b": 2},
     {"b": 4}, 0),
    ("held node gets no new instances", 6,
     nodes(("edge", False, True), ("b", True, False)), {"edge": 2, "b": 2},
     {"edge": 2, "b": 4}, 0),
    ("held node with nothing placed stays empty", 2,
     nodes(("edge", False, True), ("b", True, False)), {},
     {"b": 2}, 0),
    ("only held nodes: kept, the rest unplaced", 3,
     nodes(("edge", False, True),), {"edge": 2},
     {"edge": 2}, 1),
    ("scale down may take from a held node (applied when it returns)", 1,
     nodes(("edge", False, True), ("b", True, False)), {"edge": 2, "b": 1},
     {"b": 1}, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "replicas", "ns", "current", "expected", "unplaced"), CASES, ids=[c[0] for c in CASES]
)
def test_place_with_held_nodes(
    case: str,
    replicas: int,
    ns: list[Node],
    current: dict[str, int],
    expected: dict[str, int],
    unplaced: int,
) -> None:
    p = place(replicas, 0, {}, ns, current)
    assert dict(p.counts) == expected, case
    assert p.unplaced == unplaced
    if unplaced:
        assert p.shortfall is Shortfall.NO_NODES
    # Stable: its own result is a fixed point.
    assert dict(place(replicas, 0, {}, ns, p.counts).counts) == expected


def test_held_node_not_matching_the_selector_any_more_loses_its_instances() -> None:
    ns = [Node("edge", ready=False, held=True, labels={"site": "x"}), Node("b", ready=True)]
    p = place(2, 0, {"site": "y"}, ns, {"edge": 2})
    assert dict(p.counts) == {} and p.shortfall is Shortfall.NO_MATCHING_NODES


def report(node: str, replicas: int, ready: int, held: bool = False) -> PlacementReport:
    status = {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": ready}
    return PlacementReport(node, replicas, "r1", status, node_ready=not held, node_held=held)


def test_unconfirmed_instances_are_named_and_out_of_ready() -> None:
    from wasmlet_operator.placement import Placement

    reports = [report("edge", 2, 2, held=True), report("b", 2, 2)]
    status, conds = aggregate("web", 4, Placement({"edge": 2, "b": 2}), reports, "m")
    assert status["readyReplicas"] == 2
    assert status["placements"] == [
        {"node": "b", "replicas": 2, "readyReplicas": 2},
        {"node": "edge", "replicas": 2, "readyReplicas": 0, "nodeStatus": "Unknown"},
    ]
    c = {x.type: x for x in conds}
    for t in ("Ready", "Degraded"):
        assert c[t].reason == NODE_UNREACHABLE
        assert "2 instance(s) on node(s) edge unconfirmed" in c[t].message
    assert (c["Ready"].status, c["Degraded"].status) == ("False", "True")
    # Back in touch: ready again, nothing unconfirmed.
    status, conds = aggregate("web", 4, Placement({"edge": 2, "b": 2}),
                              [report("edge", 2, 2), report("b", 2, 2)], "m")  # fmt: skip
    c = {x.type: x for x in conds}
    assert status["readyReplicas"] == 4 and c["Ready"].status == "True"
    assert c["Degraded"].status == "False"


def _state(labels: dict[str, Any]) -> tuple[ClusterState, datetime]:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    st = ClusterState(node_grace_seconds=20)
    st.set_node({"metadata": {"name": "edge", "labels": labels}})
    st.set_lease("edge", {"renewTime": (now - timedelta(seconds=60)).isoformat()})
    return st, now


def test_state_reports_a_stale_autonomous_node_held_and_others_not() -> None:
    st, now = _state(AUTO)
    assert not st.node_ready("edge", now) and st.node_held("edge", now)
    assert [n.held for n in st.node_views(now, exclude=("ns", "a"))] == [True]
    st, now = _state({})
    assert not st.node_held("edge", now)
    # An administrator removing the label hands a node that never returns back to the usual
    # rule: its placements move.
    st, now = _state(AUTO)
    st.set_node({"metadata": {"name": "edge", "labels": {}}})
    assert not st.node_held("edge", now)
