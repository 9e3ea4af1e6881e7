"""The rollover plan: surge-first, old revisions give way as new instances become ready."""

from __future__ import annotations

import pytest

from wasmlet_agent.rollover import RevisionView, RolloverPlan, plan_rollover


@pytest.mark.parametrize(
    ("replicas", "current_ready", "older", "want"),
    [
        # nothing older: just the current revision at the wanted count
        (3, 0, [], RolloverPlan(3)),
        # nothing new is ready yet: the old revision keeps all its ready instances
        (3, 0, [RevisionView("r1", 3, 3)], RolloverPlan(3)),
        # one new instance ready: the old one gives one up
        (3, 1, [RevisionView("r1", 3, 3)], RolloverPlan(3, {"r1": 2})),
        # all new ready: the old revision goes
        (3, 3, [RevisionView("r1", 2, 2)], RolloverPlan(3, remove=("r1",))),
        # an old revision with nothing ready never holds on
        (3, 0, [RevisionView("r1", 3, 0)], RolloverPlan(3, remove=("r1",))),
        # the oldest gives way first; the budget is shared across older revisions
        (
            4,
            1,
            [RevisionView("r1", 2, 2), RevisionView("r2", 3, 3)],
            RolloverPlan(4, {"r2": 1}),
        ),
        (
            4,
            2,
            [RevisionView("r1", 2, 2), RevisionView("r2", 3, 3)],
            RolloverPlan(4, remove=("r2",)),
        ),
        # scaling to zero during a rollover removes everything old
        (0, 0, [RevisionView("r1", 2, 2)], RolloverPlan(0, remove=("r1",))),
    ],
)
def test_plan_rollover(
    replicas: int, current_ready: int, older: list[RevisionView], want: RolloverPlan
) -> None:
    assert plan_rollover(replicas, current_ready, older) == want
