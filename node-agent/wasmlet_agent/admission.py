"""Which desired apps fit this node's memory: the agent's own check, whatever placement said.

The operator places within each node's advertised memory, but two operators' views can race
(a leader change, a stale cache), so the agent checks again with the same formula
(`wasmlet.api.footprint`: an HTTP app takes limits.memory x limits.maxConcurrency on a node).
Apps already running here keep their place; newcomers are admitted in key order while they
fit, and the rest are refused with a reason the operator shows on the WasmApp.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from wasmlet.api.footprint import format_bytes

AppKey = tuple[str, str]


def refuse_over_memory(
    wanted: Mapping[AppKey, int], running: Set[AppKey], capacity: int
) -> dict[AppKey, str]:
    """Apps refused (with the message) given each app's memory on this node (`wanted`)."""
    order = sorted(wanted, key=lambda k: (k not in running, k))
    used = 0
    refused: dict[AppKey, str] = {}
    for key in order:
        need = wanted[key]
        if need and used + need > capacity:
            refused[key] = (
                f"needs {format_bytes(need)} of memory on this node (limits.memory, "
                f"x limits.maxConcurrency in http mode) but only {format_bytes(capacity - used)} "
                f"of its {format_bytes(capacity)} (--capacity-memory) is free; lower "
                "replicas or limits, or add nodes"
            )
            continue
        used += need
    return refused
