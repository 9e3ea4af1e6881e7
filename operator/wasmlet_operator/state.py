"""What the operator knows of the cluster, kept current by watch events (no list per reconcile)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from wasmlet.api.constants import NodeStatus
from wasmlet.api.footprint import footprint_of_template
from wasmlet_operator.nodes import lease_fresh, node_from, node_status
from wasmlet_operator.placement import Node
from wasmlet_operator.quota import AppDemand, QuotaDecision, decide, demand_from, quota_from

AppKey = tuple[str, str]  # (namespace, name)


def _placement_memory(spec: Mapping[str, Any]) -> int:
    """Memory a placement with `spec` may take on its node (HTTP: maxConcurrency x memory)."""
    return footprint_of_template(spec.get("template") or {}).on_node(int(spec.get("replicas") or 0))


def _placement_view(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """What placement and Services read of a WasmNode (not its instance count)."""
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    return (
        meta.get("labels"),
        (node.get("spec") or {}).get("unschedulable"),
        status.get("capacity"),
        status.get("address"),
    )


class ClusterState:
    def __init__(self, node_grace_seconds: float) -> None:
        self.grace = node_grace_seconds
        self.nodes: dict[str, Mapping[str, Any]] = {}
        self.leases: dict[str, Mapping[str, Any]] = {}
        # (namespace, app) -> node -> placement object
        self.placements: dict[AppKey, dict[str, Mapping[str, Any]]] = defaultdict(dict)
        self._wakeups: dict[AppKey, asyncio.Event] = {}
        self._ready: dict[str, bool] = {}
        # Instances and memory placed per node by all apps, kept up to date by each placement
        # event (recomputed per reconcile, they made a burst of N apps cost O(N^2)), and what
        # each placement adds to them.
        self._instances: dict[str, int] = defaultdict(int)
        self._memory: dict[str, int] = defaultdict(int)
        self._adds: dict[tuple[AppKey, str], tuple[Mapping[str, Any], int, int]] = {}
        # What quotas need: every app's demand and every WasmAppQuota, per namespace.
        self.demands: dict[str, dict[str, AppDemand]] = defaultdict(dict)
        self.quotas: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)

    # --- events -------------------------------------------------------------------------

    def wakeup(self, key: AppKey) -> asyncio.Event:
        return self._wakeups.setdefault(key, asyncio.Event())

    def app_count(self) -> int:
        return len(self._wakeups)

    def forget_app(self, key: AppKey) -> None:
        self._wakeups.pop(key, None)

    def wake(self, key: AppKey) -> None:
        if key in self._wakeups:
            self._wakeups[key].set()

    def wake_all(self) -> None:
        for event in self._wakeups.values():
            event.set()

    def wake_namespace(self, namespace: str) -> None:
        for (ns, _), event in self._wakeups.items():
            if ns == namespace:
                event.set()

    def set_app(self, app: Mapping[str, Any], deleted: bool = False) -> bool:
        """Record a WasmApp's demand; True if it changed what quotas count."""
        meta = app["metadata"]
        ns, name = meta["namespace"], meta["name"]
        old = self.demands[ns].get(name)
        if deleted or meta.get("deletionTimestamp"):
            self.demands[ns].pop(name, None)
            return old is not None
        new = demand_from(app)
        self.demands[ns][name] = new
        return new != old

    def set_quota(self, quota: Mapping[str, Any], deleted: bool = False) -> str:
        meta = quota["metadata"]
        ns = meta["namespace"]
        if deleted:
            self.quotas[ns].pop(meta["name"], None)
        else:
            self.quotas[ns][meta["name"]] = quota
        return str(ns)

    def quota_decision(self, namespace: str, app: Mapping[str, Any] | None = None) -> QuotaDecision:
        """The namespace's quota decision; `app` (a fresher body) replaces its recorded one."""
        demands = dict(self.demands.get(namespace, {}))
        if app is not None:
            demands[app["metadata"]["name"]] = demand_from(app)
        quotas = [quota_from(q) for _, q in sorted(self.quotas.get(namespace, {}).items())]
        return decide(list(demands.values()), quotas)

    def set_placement(self, placement: Mapping[str, Any], deleted: bool = False) -> AppKey:
        meta = placement["metadata"]
        spec = placement.get("spec") or {}
        key = (meta["namespace"], spec.get("app", ""))
        node = spec.get("node", "")
        if deleted:
            self.placements[key].pop(node, None)
        else:
            self.placements[key][node] = placement
        self._count(key, node, None if deleted else spec)
        return key

    def _count(self, key: AppKey, node: str, spec: Mapping[str, Any] | None) -> None:
        """Keep the per-node totals: take back what the placement added, add what it adds
        now (status-only events change nothing: the spec is compared first)."""
        before = self._adds.get((key, node))
        if before is not None and spec is not None and before[0] == spec:
            return
        if before is not None:
            del self._adds[(key, node)]
            self._instances[node] -= before[1]
            self._memory[node] -= before[2]
        if spec is not None:
            instances = int(spec.get("replicas") or 0)
            memory = _placement_memory(spec)
            self._adds[(key, node)] = (spec, instances, memory)
            self._instances[node] += instances
            self._memory[node] += memory

    def set_node(self, node: Mapping[str, Any], deleted: bool = False) -> bool:
        """Record a WasmNode; True if something placement depends on changed."""
        name = node["metadata"]["name"]
        old = self.nodes.get(name)
        if deleted:
            self.nodes.pop(name, None)
            return old is not None
        self.nodes[name] = node
        return old is None or _placement_view(old) != _placement_view(node)

    def set_lease(self, name: str, spec: Mapping[str, Any] | None) -> None:
        if spec is None:
            self.leases.pop(name, None)
        else:
            self.leases[name] = spec

    # --- readings -----------------------------------------------------------------------

    def node_ready(self, name: str, now: datetime) -> bool:
        return name in self.nodes and lease_fresh(self.leases.get(name), now, self.grace)

    def node_held(self, name: str, now: datetime) -> bool:
        """Autonomous and out of touch: its placements stay (see nodes.node_status)."""
        obj = self.nodes.get(name)
        if obj is None:
            return False
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return node_status(self.node_ready(name, now), labels) is NodeStatus.UNKNOWN

    def refresh_readiness(self, now: datetime) -> list[tuple[str, bool]]:
        """Nodes whose readiness changed since the last call, with their new readiness."""
        changed = []
        for name in set(self.nodes) | set(self._ready):
            ready = self.node_ready(name, now)
            if self._ready.get(name) != ready:
                changed.append((name, ready))
                self._ready[name] = ready
        return changed

    def node_views(self, now: datetime, exclude: AppKey) -> list[Node]:
        """Placement's view of every node, with what other apps already take on it."""
        out = []
        for name, obj in sorted(self.nodes.items()):
            _, own_i, own_m = self._adds.get((exclude, name), (None, 0, 0))
            used_i = self._instances.get(name, 0) - own_i
            used_m = self._memory.get(name, 0) - own_m
            out.append(node_from(obj, self.node_ready(name, now), used_i, used_m))
        return out

    def address_of(self, node: str) -> str | None:
        status = (self.nodes.get(node) or {}).get("status") or {}
        address = status.get("address")
        return str(address) if address else None
