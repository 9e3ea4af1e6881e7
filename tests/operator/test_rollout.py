"""nodes_to_switch(): the rollout never has more unready updated instances than allowed."""

from __future__ import annotations

import pytest

from wasmlet_operator.rollout import NodeRollout, nodes_to_switch, resolve_int_or_percent


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [(2, 10, False, 2), ("25%", 10, False, 2), ("25%", 10, True, 3), ("100%", 4, False, 4)],
)
def test_resolve(value: int | str, total: int, up: bool, expected: int) -> None:
    assert resolve_int_or_percent(value, total, up) == expected


def test_first_step_switches_within_budget() -> None:
    ps = [NodeRollout(n, 2, "old", 2) for n in ("a", "b", "c", "d")]
    assert nodes_to_switch(ps, "new", "50%", 8) == ["a", "b"]


def test_waits_while_switched_nodes_are_not_ready() -> None:
    ps = [NodeRollout("a", 2, "new", 0), NodeRollout("b", 2, "old", 2)]
    assert nodes_to_switch(ps, "new", 1, 4) == []


def test_continues_when_switched_nodes_are_ready() -> None:
    ps = [NodeRollout("a", 2, "new", 2), NodeRollout("b", 2, "old", 2)]
    assert nodes_to_switch(ps, "new", 1, 4) == ["b"]


def test_always_makes_progress_with_a_tiny_budget() -> None:
    ps = [NodeRollout("a", 5, "old", 5)]
    assert nodes_to_switch(ps, "new", 0, 5) == ["a"]


def test_done_when_all_switched() -> None:
    ps = [NodeRollout("a", 1, "new", 1)]
    assert nodes_to_switch(ps, "new", "25%", 1) == []
