"""Rolling a new app revision over nodes without dropping below what the spec allows.

Each node's agent replaces its own instances surge-first (new ones Ready before old ones
stop). The operator moves nodes to the new revision in steps: a node is switched only while
the instances on switched-but-not-yet-ready nodes stay within maxUnavailable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeRollout:
    """A placement's progress as the operator sees it."""

    node: str
    replicas: int
    revision: str  # the revision its spec asks for
    updated_ready: int  # ready instances of that revision (from the agent's status)


def resolve_int_or_percent(value: int | str, total: int, round_up: bool) -> int:
    """An int-or-percent (maxUnavailable) as a count, like Deployments (percent rounds down/up)."""
    if isinstance(value, int):
        return value
    pct = int(value.rstrip("%"))
    exact = total * pct / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def nodes_to_switch(
    placements: list[NodeRollout], revision: str, max_unavailable: int | str, replicas: int
) -> list[str]:
    """Nodes whose placement should move to `revision` now (possibly none)."""
    budget = max(resolve_int_or_percent(max_unavailable, replicas, round_up=False), 1)
    in_flight = sum(
        p.replicas - p.updated_ready
        for p in placements
        if p.revision == revision and p.updated_ready < p.replicas
    )
    chosen: list[str] = []
    for p in sorted(placements, key=lambda p: p.node):
        if p.revision == revision:
            continue
        if in_flight + p.replicas > budget and (in_flight > 0 or chosen):
            break
        chosen.append(p.node)
        in_flight += p.replicas
    return chosen
