"""Kubernetes-convention conditions: set one, keep lastTransitionTime unless status changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from wasmlet.api.constants import ConditionType
from wasmlet.api.placements import transition_time
from wasmlet_operator.rollout import ProgressReason


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


Event = tuple[str, str, str]  # (type, reason, message)


def transition_events(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[Event]:
    """The Events a change of conditions is worth (pure): Ready when the app becomes Ready, a
    Degraded reason when it appears, and the end of a rollout: past its progress deadline, or
    complete on an app that was Ready before it. A new app's first start is Scheduled and
    Ready only; a Ready that stays True with another reason posts nothing again."""
    before = {c.get("type"): c for c in old}
    was_ready = (before.get(ConditionType.READY) or {}).get("status") == "True"
    out: list[Event] = []
    for c in new:
        prev = before.get(c["type"])
        if prev is not None and (prev.get("status"), prev.get("reason")) == (
            c["status"],
            c["reason"],
        ):
            continue
        if c["type"] == ConditionType.READY and c["status"] == "True":
            if not was_ready:
                out.append(("Normal", "Ready", c["message"]))
        elif c["type"] == ConditionType.DEGRADED and c["status"] == "True":
            # Degraded carries the reason (a pull failure, a shortfall of nodes, ...).
            out.append(("Warning", c["reason"], c["message"]))
        elif c["type"] == ConditionType.PROGRESSING and prev is not None:
            if c["reason"] == ProgressReason.DEADLINE_EXCEEDED:
                out.append(("Warning", c["reason"], c["message"]))
            elif c["reason"] == ProgressReason.COMPLETE and was_ready:
                out.append(("Normal", c["reason"], c["message"]))
    return out
