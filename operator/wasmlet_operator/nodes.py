"""Node readiness from heartbeats, and the capacity view placement needs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from wasmlet.api.constants import AUTONOMOUS_LABEL, NodeStatus
from wasmlet.api.spec import parse_quantity
from wasmlet_operator.placement import Node

DEFAULT_CAPACITY_INSTANCES = 1000
DEFAULT_CAPACITY_MEMORY = 8 * 1024**3


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def lease_fresh(lease_spec: Mapping[str, Any] | None, now: datetime, grace: float) -> bool:
    """A node is ready while its Lease was renewed within `grace` seconds (like the kubelet's)."""
    if not lease_spec:
        return False
    renewed = parse_time(lease_spec.get("renewTime")) or parse_time(lease_spec.get("acquireTime"))
    if renewed is None:
        return False
    return (now - renewed).total_seconds() <= grace


def autonomous(labels: Mapping[str, str]) -> bool:
    """An administrator marked the node autonomous: out of touch, it keeps its placements."""
    return labels.get(AUTONOMOUS_LABEL) == "true"


def node_status(ready: bool, labels: Mapping[str, str]) -> NodeStatus:
    """Ready while heartbeating; otherwise Unknown if autonomous (kept), else Lost (moved)."""
    if ready:
        return NodeStatus.READY
    return NodeStatus.UNKNOWN if autonomous(labels) else NodeStatus.LOST


def node_from(
    wasmnode: Mapping[str, Any],
    ready: bool,
    used_instances: int = 0,
    used_memory_bytes: int = 0,
) -> Node:
    """A placement Node from a WasmNode object and what other apps already use on it."""
    meta = wasmnode.get("metadata") or {}
    spec = wasmnode.get("spec") or {}
    capacity = (wasmnode.get("status") or {}).get("capacity") or {}
    memory = capacity.get("memory")
    labels = dict(meta.get("labels") or {})
    return Node(
        name=str(meta.get("name")),
        ready=ready,
        held=node_status(ready, labels) is NodeStatus.UNKNOWN,
        labels=labels,
        unschedulable=bool(spec.get("unschedulable", False)),
        capacity_instances=int(capacity.get("instances") or DEFAULT_CAPACITY_INSTANCES),
        capacity_memory_bytes=(
            parse_quantity(memory, "status.capacity.memory") if memory else DEFAULT_CAPACITY_MEMORY
        ),
        used_instances=used_instances,
        used_memory_bytes=used_memory_bytes,
    )


def ready_status(node: Mapping[str, Any]) -> str | None:
    """The status of the WasmNode's Ready condition ("True", "False", "Unknown"), if any."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status"))
    return None


def needs_unknown(node: Mapping[str, Any], heartbeat_fresh: bool) -> bool:
    """Like the node lifecycle controller: a node whose heartbeat went stale while its agent's
    last word was Ready=True gets Ready=Unknown (the agent sets True again when it is back)."""
    return not heartbeat_fresh and ready_status(node) == "True"


def unknown_ready_patch(now: datetime, grace: float) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "Unknown",
                    "reason": "NodeStatusUnknown",
                    "message": f"the agent stopped heartbeating (no Lease renewal for {grace:g}s)",
                    "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ]
        }
    }
