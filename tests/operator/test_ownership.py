"""The operator touches only objects its WasmApp owns: the ownership decision and its conditions."""

from __future__ import annotations

from typing import Any

import pytest

from wasmlet_operator.conditions import Condition
from wasmlet_operator.ownership import (
    Ownership,
    conflict_message,
    ownership,
    with_name_conflict,
)


def obj(*owner_uids: str, kind: str = "WasmApp") -> dict[str, Any]:
    refs = [{"kind": kind, "name": "x", "uid": u} for u in owner_uids]
    return {"metadata": {"name": "web", "ownerReferences": refs}}


@pytest.mark.parametrize(
    ("existing", "uid", "expected"),
    [
        (None, "u-1", Ownership.ABSENT),
        (obj("u-1"), "u-1", Ownership.OURS),
        (obj("other", "u-1"), "u-1", Ownership.OURS),
        (obj(), "u-1", Ownership.CONFLICT),  # a user's own Service, no owner
        ({"metadata": {"name": "web"}}, "u-1", Ownership.CONFLICT),
        (obj("u-old"), "u-1", Ownership.CONFLICT),  # a deleted app of the same name
        (obj("u-1", kind="Deployment"), "u-1", Ownership.OURS),  # the uid decides, not the kind
        (obj(""), "", Ownership.CONFLICT),  # an app without a uid owns nothing
    ],
)
def test_ownership(existing: dict[str, Any] | None, uid: str, expected: Ownership) -> None:
    assert ownership(existing, uid) is expected


def test_conflict_message_names_the_object_its_owner_and_the_fix() -> None:
    msg = conflict_message("Service", "team", "web", obj("u-9", kind="Deployment"))
    assert "Service team/web already exists" in msg
    assert "owned by Deployment x" in msg
    assert "Rename the WasmApp or delete that Service" in msg
    assert "not created by wasmlet" in conflict_message("Service", "team", "web", obj())


def test_name_conflict_sets_ready_false_and_degraded_true_keeping_progressing() -> None:
    before = [
        Condition("Ready", "True", "InstancesReady", "1/1"),
        Condition("Progressing", "True", "RolloutComplete"),
        Condition("Degraded", "False", "AsExpected"),
    ]
    after = {c.type: c for c in with_name_conflict(before, "in the way")}
    assert (after["Ready"].status, after["Ready"].reason) == ("False", "NameConflict")
    assert (after["Degraded"].status, after["Degraded"].reason) == ("True", "NameConflict")
    assert after["Degraded"].message == "in the way"
    assert after["Progressing"] == before[1]
    assert len(after) == 3
