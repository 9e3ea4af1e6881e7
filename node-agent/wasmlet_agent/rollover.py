"""The rollover plan of one app on this node: a pure decision, carried out by the app controller.

Surge-first, like a Deployment with maxUnavailable 0 on this node: the desired revision is
scaled to what is wanted at once, and older revisions keep only as many instances as the new
one still lacks ready ones, so the app never drops below its ready count here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RevisionView:
    """What the plan reads of a running revision."""

    revision: str
    desired: int  # instances it is asked to keep now
    ready: int


@dataclass(frozen=True)
class RolloverPlan:
    current: int  # instances of the desired revision
    scale: dict[str, int] = field(default_factory=dict)  # older revision -> instances to keep
    remove: tuple[str, ...] = ()  # older revisions to stop entirely


def plan_rollover(replicas: int, current_ready: int, older: Sequence[RevisionView]) -> RolloverPlan:
    """`older` oldest first; the oldest give way first."""
    budget = max(replicas - current_ready, 0)
    scale: dict[str, int] = {}
    remove: list[str] = []
    for old in older:
        keep = min(budget, old.ready)
        if keep == 0:
            remove.append(old.revision)
        elif keep != old.desired:
            scale[old.revision] = keep
        budget -= keep
    return RolloverPlan(replicas, scale, tuple(remove))
