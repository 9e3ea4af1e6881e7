"""Desired placement specs per node: created, updated, switched, deleted (pure, no cluster)."""

from __future__ import annotations

from typing import Any

from wasmlet_operator.placement_specs import PlacementChanges, plan_placements

OLD, NEW = {"module": "old"}, {"module": "new"}


def spec(replicas: int, revision: str = "r1", template: dict[str, str] = OLD) -> dict[str, Any]:
    return {"app": "a", "node": "n", "replicas": replicas, "revision": revision,
            "template": dict(template)}  # fmt: skip


def test_new_nodes_are_created_at_the_new_revision() -> None:
    assert plan_placements({"n1": 2}, {}, "r2", NEW, set()) == PlacementChanges(create={"n1": 2})


def test_unchanged_placements_are_left_alone() -> None:
    assert plan_placements({"n1": 2}, {"n1": spec(2)}, "r1", OLD, set()) == PlacementChanges()


def test_scaling_keeps_the_revision_of_a_node_not_yet_switched() -> None:
    got = plan_placements({"n1": 3}, {"n1": spec(2)}, "r2", NEW, set())
    assert got.update == {"n1": spec(3)} and got.switched == ()


def test_a_switched_node_moves_to_the_new_revision_and_template() -> None:
    got = plan_placements({"n1": 2, "n2": 1}, {"n1": spec(2), "n2": spec(1)}, "r2", NEW, {"n2"})
    assert got.update == {"n2": spec(1, "r2", NEW)} and got.switched == ("n2",)


def test_nodes_no_longer_chosen_lose_their_placement() -> None:
    got = plan_placements({"n1": 1}, {"n1": spec(1), "n2": spec(1)}, "r1", OLD, set())
    assert got == PlacementChanges(delete=("n2",))
