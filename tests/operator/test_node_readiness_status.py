"""Ready=Unknown on a WasmNode whose heartbeat went stale: when, and the patch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wasmlet_operator.nodes import needs_unknown, ready_status, unknown_ready_patch


def node(status: str | None) -> dict[str, object]:
    conditions = [] if status is None else [{"type": "Ready", "status": status}]
    return {"metadata": {"name": "n1"}, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("status", "fresh", "expected"),
    [
        ("True", False, True),  # stale heartbeat, agent said Ready: Unknown
        ("True", True, False),  # healthy
        ("Unknown", False, False),  # already marked: no second write
        (None, False, False),  # never reported (registering): nothing to correct
        ("Unknown", True, False),  # back: the agent writes True itself
    ],
)
def test_needs_unknown(status: str | None, fresh: bool, expected: bool) -> None:
    assert needs_unknown(node(status), fresh) is expected


def test_the_patch_sets_ready_unknown_with_a_reason() -> None:
    patch = unknown_ready_patch(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), 20.0)
    (c,) = patch["status"]["conditions"]
    assert (c["type"], c["status"], c["reason"]) == ("Ready", "Unknown", "NodeStatusUnknown")
    assert "20s" in c["message"] and c["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert ready_status({"status": patch["status"]}) == "Unknown"
