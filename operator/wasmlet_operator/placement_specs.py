"""What each node's placement of an app should say: a pure decision, written by reconcile.py.

Given where the app goes (`place`) and which nodes move to the new revision now
(`nodes_to_switch`), each existing placement keeps its revision and template unless its node
switches; new nodes start at the new revision; nodes no longer chosen lose their placement.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlacementChanges:
    create: dict[str, int] = field(default_factory=dict)  # node -> replicas, at the new revision
    update: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> the whole new spec
    delete: tuple[str, ...] = ()  # nodes whose placement goes
    switched: tuple[str, ...] = ()  # nodes moved to the new revision by an update


def plan_placements(
    counts: Mapping[str, int],
    existing: Mapping[str, Mapping[str, Any]],
    revision: str,
    template: Mapping[str, Any],
    switch: Collection[str],
) -> PlacementChanges:
    """`existing` maps node -> placement spec; only placements that change are listed."""
    create: dict[str, int] = {}
    update: dict[str, dict[str, Any]] = {}
    switched: list[str] = []
    for node, count in sorted(counts.items()):
        spec = existing.get(node)
        if spec is None:
            create[node] = count
            continue
        moves = spec["revision"] != revision and node in switch
        new_rev = revision if moves else spec["revision"]
        wanted = {
            **spec,
            "replicas": count,
            "revision": new_rev,
            "template": dict(template if new_rev == revision else spec["template"]),
        }
        if wanted != spec:
            update[node] = wanted
            if moves:
                switched.append(node)
    delete = tuple(sorted(node for node in existing if node not in counts))
    return PlacementChanges(create, update, delete, tuple(switched))
