"""Where an app's instances go: a pure decision over nodes, capacity and the current layout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from wasmlet_operator.quota import Refusal


@dataclass(frozen=True)
class Node:
    """What placement needs to know of a wasmlet node."""

    name: str
    ready: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    capacity_instances: int = 1000
    capacity_memory_bytes: int = 8 * 1024**3
    # Taken by other apps' placements on this node.
    used_instances: int = 0
    used_memory_bytes: int = 0
    # Not ready, but an administrator marked it autonomous: it keeps what it has (never more).
    held: bool = False


class Shortfall(StrEnum):
    NONE = ""
    NO_NODES = "NoNodes"  # no ready wasmlet node at all
    NO_MATCHING_NODES = "NoMatchingNodes"  # nodeSelector matches no ready node
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    QUOTA_EXCEEDED = "QuotaExceeded"  # a WasmAppQuota of the namespace (quota.py)


@dataclass(frozen=True)
class Placement:
    """Instances per node (nodes with 0 are omitted) and what could not be placed."""

    counts: Mapping[str, int]
    unplaced: int = 0
    shortfall: Shortfall = Shortfall.NONE
    message: str = ""

    @property
    def placed(self) -> int:
        return sum(self.counts.values())


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _room(node: Node, memory_per_instance: int, have: int, memory_per_node: int = 0) -> int:
    """How many more instances of this app fit on node, given `have` already there.

    `memory_per_node` is taken once by the first instance on a node (an HTTP app's front
    may run limits.maxConcurrency instances at once there, however many replicas it has)."""
    by_count = node.capacity_instances - node.used_instances - have
    free_memory = (
        node.capacity_memory_bytes
        - node.used_memory_bytes
        - have * memory_per_instance
        - memory_per_node
    )
    if free_memory < 0:
        return 0
    if memory_per_instance <= 0:
        return max(by_count, 0)
    return max(min(by_count, free_memory // memory_per_instance), 0)


def place(
    replicas: int,
    memory_per_instance: int,
    selector: Mapping[str, str],
    nodes: list[Node],
    current: Mapping[str, int],
    memory_per_node: int = 0,
) -> Placement:
    """Spread replicas over eligible nodes, keeping existing instances where they are.

    Level-triggered and stable: calling it again with its own result as `current` returns
    the same counts. Nodes that are not ready, cordoned or not matching lose their
    instances, except held (autonomous, out of touch) nodes, which keep theirs but get no
    more; the rest are filled one at a time onto the node with the fewest instances of
    this app (ties: most free room, then name), within capacity. Memory on a node is
    `memory_per_instance` x instances + `memory_per_node` once (wasmlet.api.footprint).
    """

    def room(n: Node, have: int) -> int:
        return _room(n, memory_per_instance, have, memory_per_node)

    ready = [n for n in nodes if n.ready and not n.unschedulable]
    eligible = sorted((n for n in ready if matches(selector, n.labels)), key=lambda n: n.name)
    held = {
        n.name: min(current.get(n.name, 0), n.capacity_instances)
        for n in nodes
        if n.held and not n.ready and not n.unschedulable and matches(selector, n.labels)
    }
    held = {name: c for name, c in held.items() if c > 0}
    if replicas == 0:
        return Placement(counts={})
    if not ready and not held:
        return Placement({}, replicas, Shortfall.NO_NODES, "no ready wasmlet node")
    if not eligible and not held:
        sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        return Placement(
            {}, replicas, Shortfall.NO_MATCHING_NODES, f"no ready node matches nodeSelector {sel}"
        )

    counts = {n.name: min(current.get(n.name, 0), n.capacity_instances) for n in eligible}
    counts.update(held)
    # Scale down: take from the fullest node first so the spread stays even.
    while sum(counts.values()) > replicas:
        fullest = max(counts, key=lambda name: (counts[name], name))
        counts[fullest] -= 1
    by_name = {n.name: n for n in eligible}
    while sum(counts.values()) < replicas:
        candidates = [n for n in eligible if room(n, counts[n.name]) > 0]
        if not candidates:
            break
        best = min(
            candidates,
            key=lambda n: (counts[n.name], -room(n, counts[n.name]), n.name),
        )
        counts[best.name] += 1
    placed = {name: c for name, c in counts.items() if c > 0}
    missing = replicas - sum(placed.values())
    if missing and not eligible:
        return Placement(
            placed,
            missing,
            Shortfall.NO_NODES,
            f"{missing} of {replicas} instances have no ready node (autonomous nodes that are "
            "out of touch keep theirs but get no more)",
        )
    if missing:
        free = sum(room(by_name[n], counts[n]) for n in by_name)
        return Placement(
            placed,
            missing,
            Shortfall.INSUFFICIENT_CAPACITY,
            f"{missing} of {replicas} instances do not fit on the {len(eligible)} matching "
            f"node(s) (room for {free} more); add nodes or lower replicas or limits.memory "
            "(x limits.maxConcurrency per node in http mode)",
        )
    return Placement(placed)


def refused_by_quota(placed: Placement, wanted: int, refusal: Refusal) -> Placement:
    """`placed` (the replicas a quota allowed) as seen against the `wanted` replicas: the
    rest is unplaced because of the quota (and of capacity, if that also fell short)."""
    message = refusal.message
    if placed.unplaced:
        message = f"{message}; also: {placed.message}"
    return Placement(placed.counts, wanted - placed.placed, Shortfall.QUOTA_EXCEEDED, message)
