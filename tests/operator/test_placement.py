"""place(): spread, stability, selectors, readiness, capacity."""

from __future__ import annotations

import pytest

from wasmlet_operator.placement import Node, Shortfall, place

MI = 1024**2


def nodes(*names: str, **kw: object) -> list[Node]:
    return [Node(name=n, ready=True, **kw) for n in names]  # type: ignore[arg-type]


def test_spreads_evenly() -> None:
    p = place(10, MI, {}, nodes("a", "b", "c"), {})
    assert dict(p.counts) == {"a": 4, "b": 3, "c": 3}
    assert p.unplaced == 0 and p.shortfall is Shortfall.NONE


def test_is_stable_when_fed_its_own_result() -> None:
    ns = nodes("a", "b", "c")
    first = place(7, MI, {}, ns, {})
    assert place(7, MI, {}, ns, first.counts).counts == first.counts


def test_keeps_existing_instances_and_scales_down_from_the_fullest() -> None:
    p = place(3, MI, {}, nodes("a", "b", "c"), {"a": 3, "b": 1})
    assert dict(p.counts) == {"a": 2, "b": 1}


def test_scale_to_zero_places_nothing() -> None:
    assert place(0, MI, {}, nodes("a"), {"a": 5}).counts == {}


def test_not_ready_node_loses_its_instances() -> None:
    ns = [Node("a", ready=False), Node("b", ready=True), Node("c", ready=True)]
    p = place(4, MI, {}, ns, {"a": 2, "b": 1, "c": 1})
    assert dict(p.counts) == {"b": 2, "c": 2}


def test_cordoned_node_is_not_used() -> None:
    ns = [Node("a", ready=True, unschedulable=True), Node("b", ready=True)]
    assert dict(place(2, MI, {}, ns, {}).counts) == {"b": 2}


def test_node_selector() -> None:
    ns = [Node("a", True, {"zone": "edge"}), Node("b", True, {"zone": "core"})]
    assert dict(place(3, MI, {"zone": "edge"}, ns, {}).counts) == {"a": 3}
    none = place(3, MI, {"zone": "moon"}, ns, {})
    assert none.counts == {} and none.unplaced == 3
    assert none.shortfall is Shortfall.NO_MATCHING_NODES
    assert "zone=moon" in none.message


def test_no_nodes_at_all() -> None:
    p = place(1, MI, {}, [], {})
    assert p.shortfall is Shortfall.NO_NODES and p.unplaced == 1


@pytest.mark.parametrize(
    ("node", "expected_placed"),
    [
        (Node("a", True, capacity_instances=3), 3),
        (Node("a", True, capacity_instances=10, used_instances=8), 2),
        (Node("a", True, capacity_memory_bytes=4 * MI), 4),
        (Node("a", True, capacity_memory_bytes=10 * MI, used_memory_bytes=7 * MI), 3),
    ],
)
def test_capacity_limits_what_fits(node: Node, expected_placed: int) -> None:
    p = place(5, MI, {}, [node], {})
    assert p.placed == expected_placed
    assert p.unplaced == 5 - expected_placed
    assert p.shortfall is Shortfall.INSUFFICIENT_CAPACITY
    assert "do not fit" in p.message


def test_fills_the_roomier_node_on_ties() -> None:
    ns = [Node("a", True, capacity_instances=2), Node("b", True, capacity_instances=10)]
    assert dict(place(5, 0, {}, ns, {}).counts) == {"a": 2, "b": 3}


def test_http_app_takes_max_concurrency_times_memory_once_per_node() -> None:
    """An HTTP app's front may run maxConcurrency instances at once on a node, whatever the
    number of its replicas there (wasmlet.api.footprint)."""
    from wasmlet.api.footprint import footprint

    fp = footprint("http", 64 * MI, 64)  # 4Gi per node
    assert (fp.per_instance, fp.per_node) == (0, 4096 * MI)
    gi = 1024 * MI
    ns = [
        Node("a", True, capacity_memory_bytes=6 * gi, used_memory_bytes=gi),
        Node("b", True, capacity_memory_bytes=6 * gi, used_memory_bytes=3 * gi),
    ]
    p = place(3, fp.per_instance, {}, ns, {}, memory_per_node=fp.per_node)
    assert dict(p.counts) == {"a": 3}  # b has 3Gi free: not enough for one front
    # Counted as replicas x memory (the old way) the same app would have fit on both.
    assert dict(place(3, 64 * MI, {}, ns, {}).counts) == {"a": 2, "b": 1}
    full = place(1, fp.per_instance, {}, ns[1:], {}, memory_per_node=fp.per_node)
    assert full.shortfall is Shortfall.INSUFFICIENT_CAPACITY
    assert "x limits.maxConcurrency per node in http mode" in full.message
    command = footprint("command", 64 * MI, 64)
    assert (command.per_instance, command.per_node, command.on_node(3)) == (64 * MI, 0, 192 * MI)
