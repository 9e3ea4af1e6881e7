"""Whose object is it: the operator changes or deletes only what its WasmApp owns (no hijack).

A Service or EndpointSlice the operator wants may already exist under the same name, made by
a user or another controller. Only an object whose ownerReferences carry this WasmApp's uid
is the operator's to patch, replace or delete; anything else is a name conflict, reported on
the WasmApp and left untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from wasmlet.api.constants import ConditionType
from wasmlet_operator.conditions import Condition, OperatorReason


class Ownership(StrEnum):
    ABSENT = "Absent"  # nothing by that name: create it
    OURS = "Ours"  # owned by this WasmApp (same uid): update or delete it
    CONFLICT = "Conflict"  # someone else's: touch nothing, report NameConflict


def ownership(existing: Mapping[str, Any] | None, app_uid: str) -> Ownership:
    """What the operator may do with `existing` on behalf of the WasmApp with `app_uid`."""
    if existing is None:
        return Ownership.ABSENT
    refs = (existing.get("metadata") or {}).get("ownerReferences") or []
    if app_uid and any(r.get("uid") == app_uid for r in refs):
        return Ownership.OURS
    return Ownership.CONFLICT


def conflict_message(kind: str, namespace: str, name: str, existing: Mapping[str, Any]) -> str:
    """What to tell the WasmApp's author: which object is in the way and how to resolve it."""
    refs = (existing.get("metadata") or {}).get("ownerReferences") or []
    owner = (
        f"owned by {refs[0].get('kind', '?')} {refs[0].get('name', '?')}"
        if refs
        else "not created by wasmlet"
    )
    return (
        f"{kind} {namespace}/{name} already exists and is {owner}; wasmlet will not change or "
        f"delete it. Rename the WasmApp or delete that {kind} to let wasmlet create its own"
    )


def with_name_conflict(conditions: Sequence[Condition], message: str) -> list[Condition]:
    """The app's conditions with Ready False and Degraded True for a name conflict."""
    reason = OperatorReason.NAME_CONFLICT
    out = [c for c in conditions if c.type not in (ConditionType.READY, ConditionType.DEGRADED)]
    out.insert(0, Condition(ConditionType.READY, "False", reason, message))
    out.append(Condition(ConditionType.DEGRADED, "True", reason, message))
    return out
