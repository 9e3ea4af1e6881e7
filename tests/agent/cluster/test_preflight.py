"""The agent's start-up checks: which permissions, which are missing, and the messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet_agent.cluster.preflight import (
    REQUIRED,
    SERVED,
    Permission,
    crd_problem,
    denied,
    missing_resources,
    permission_problem,
)

ROOT = Path(__file__).resolve().parents[3]


def rbac_docs() -> list[dict[str, Any]]:
    text = (ROOT / "deploy" / "20-agent-rbac.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def granted(p: Permission, docs: list[dict[str, Any]]) -> bool:
    """Whether deploy/'s agent roles grant `p` (a ClusterRole everywhere, a Role in its ns)."""
    resource = p.resource + (f"/{p.subresource}" if p.subresource else "")
    for d in docs:
        if d["kind"] not in ("ClusterRole", "Role"):
            continue
        if d["kind"] == "Role" and d["metadata"]["namespace"] != p.namespace:
            continue
        for r in d["rules"]:
            if p.group in r["apiGroups"] and resource in r["resources"] and p.verb in r["verbs"]:
                return True
    return False


def test_deploy_grants_every_permission_the_agent_checks() -> None:
    docs = rbac_docs()
    assert [str(p) for p in REQUIRED if not granted(p, docs)] == []


def test_the_check_would_notice_a_grant_taken_away() -> None:
    docs = rbac_docs()
    for d in docs:
        for r in d.get("rules", []):
            if "wasmplacements/status" in r["resources"]:
                r["verbs"] = [v for v in r["verbs"] if v != "patch"]
    missing = [str(p) for p in REQUIRED if not granted(p, docs)]
    assert missing == ["patch wasmplacements.wasmlet.dev/status (cluster-wide)"]


@pytest.mark.parametrize(
    ("perm", "text"),
    [
        (Permission("list", "wasmlet.dev", "wasmplacements"),
         "list wasmplacements.wasmlet.dev (cluster-wide)"),
        (Permission("patch", "wasmlet.dev", "wasmnodes", "status"),
         "patch wasmnodes.wasmlet.dev/status (cluster-wide)"),
        (Permission("create", "", "serviceaccounts", "token", "wasmlet-system"),
         "create serviceaccounts/token in namespace wasmlet-system"),
        (Permission("create", "", "events"), "create events (cluster-wide)"),
    ],
)  # fmt: skip
def test_a_permission_reads_as_kubectl_auth_can_i_would(perm: Permission, text: str) -> None:
    assert str(perm) == text


def test_denied_keeps_the_required_order_and_treats_unanswered_as_denied() -> None:
    answers = {p: True for p in REQUIRED}
    assert denied(answers) == []
    answers[REQUIRED[3]] = False
    del answers[REQUIRED[1]]
    assert denied(answers) == [REQUIRED[1], REQUIRED[3]]


def test_permission_problem_names_user_each_permission_and_the_fix() -> None:
    assert permission_problem("u", []) is None
    msg = permission_problem("system:serviceaccount:x:agent", [REQUIRED[0]])
    assert msg is not None
    assert "system:serviceaccount:x:agent lacks 1 permission(s)" in msg
    assert f"{REQUIRED[0]} (for {REQUIRED[0].why})" in msg
    assert "deploy/20-agent-rbac.yaml" in msg


@pytest.mark.parametrize(
    ("served", "missing"),
    [
        (list(SERVED), []),
        ([*SERVED, "wasmapps"], []),
        ([], list(SERVED)),
        (["wasmnodes", "wasmnodes/status"], ["wasmplacements", "wasmplacements/status"]),
    ],
)
def test_missing_resources(served: list[str], missing: list[str]) -> None:
    assert missing_resources(served) == missing


def test_crd_problem_names_the_crd_and_how_to_install_it() -> None:
    assert crd_problem([]) is None
    msg = crd_problem(["wasmplacements", "wasmplacements/status"])
    assert msg is not None
    assert "wasmplacements.wasmlet.dev are not installed" in msg
    assert "kubectl apply -k deploy/" in msg
