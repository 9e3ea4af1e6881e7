"""How much memory an app may take: one formula for quotas, placement and the agent's check.

A command-mode replica is one instance, so it may take `limits.memory`. An HTTP-mode app is
served on a node by one front that runs up to `limits.maxConcurrency` instances at once
(an instance per request), whatever the number of its replicas there: its worst case on a
node is `limits.memory x limits.maxConcurrency`, once per node that serves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wasmlet.api.constants import Mode
from wasmlet.api.spec import SpecError, WasmAppSpec, parse_quantity

DEFAULT_MEMORY = "64Mi"
DEFAULT_MAX_CONCURRENCY = 16


@dataclass(frozen=True)
class Footprint:
    """Memory an app takes on one node: `per_instance` x its replicas there, plus `per_node`
    once if it has any replica there."""

    per_instance: int
    per_node: int = 0

    def on_node(self, replicas: int) -> int:
        if replicas <= 0:
            return 0
        return self.per_instance * replicas + self.per_node

    @property
    def per_replica(self) -> int:
        """The worst case of one replica on a node of its own (what a quota charges)."""
        return self.per_instance + self.per_node


def footprint(mode: Mode | str, memory_bytes: int, max_concurrency: int) -> Footprint:
    if mode == Mode.HTTP:
        return Footprint(per_instance=0, per_node=memory_bytes * max(max_concurrency, 1))
    return Footprint(per_instance=memory_bytes)


def footprint_of(spec: WasmAppSpec) -> Footprint:
    return footprint(spec.mode, spec.limits.memory_bytes, spec.limits.max_concurrency)


def footprint_of_template(template: Mapping[str, Any]) -> Footprint:
    """From a raw spec or placement template (defaults as the CRD's, a bad value counts 0)."""
    limits = template.get("limits") or {}
    try:
        memory = parse_quantity(str(limits.get("memory") or DEFAULT_MEMORY), "limits.memory")
    except SpecError:
        memory = 0
    concurrency = int(limits.get("maxConcurrency") or DEFAULT_MAX_CONCURRENCY)
    return footprint(str(template.get("mode") or Mode.COMMAND), memory, concurrency)


def format_bytes(n: int) -> str:
    """64Mi, 1536Mi, 3Gi: the largest binary suffix that divides exactly."""
    for suffix, size in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n and n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)
