"""Kubernetes-convention conditions: set one, keep lastTransitionTime unless status changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from wasmlet.api.placements import transition_time


class OperatorReason(StrEnum):
    """Reasons only the operator sets on WasmApp conditions (agents' reasons: api.placements)."""

    NAME_CONFLICT = "NameConflict"  # a Service/EndpointSlice of the app's name is not ours


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    # Progressing only: when the rollout last made progress (RFC 3339), like a Deployment's
    # lastUpdateTime; the progress deadline counts from it, so it is kept in status.
    last_update: str | None = None


def merge_conditions(
    existing: Sequence[Mapping[str, Any]],
    wanted: Sequence[Condition],
    now: str,
    generation: int,
) -> list[dict[str, Any]]:
    """The new conditions list: wanted ones, transition times kept where status is unchanged."""
    old = {c.get("type"): c for c in existing}
    out: list[dict[str, Any]] = []
    for c in wanted:
        since = transition_time(old.get(c.type), c.status, now)
        entry = {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": since,
            "observedGeneration": generation,
        }
        if c.last_update is not None:
            entry["lastUpdateTime"] = c.last_update
        out.append(entry)
    return out
