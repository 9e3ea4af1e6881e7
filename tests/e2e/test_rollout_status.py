"""A rollout to a module that cannot be pulled: the old instances keep serving and the
WasmApp's status says exactly that (Deployment's model), until the tag exists and it
converges."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.ports import free_port
from wasmlet_dev.waits import Observing, wait_until

pytestmark = pytest.mark.e2e


def status(stack: Stack, ns: str, name: str) -> dict[str, Any]:
    return dict(stack.app(ns, name).get("status") or {})


def conditions(stack: Stack, ns: str, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status(stack, ns, name).get("conditions") or []}


def progressing(stack: Stack, ns: str, name: str) -> tuple[str, str]:
    c = conditions(stack, ns, name).get("Progressing") or {}
    return c.get("status", ""), c.get("reason", "")


def complete(stack: Stack, ns: str, name: str) -> bool:
    app = stack.app(ns, name)
    st = app.get("status") or {}
    return (
        st.get("observedGeneration") == app["metadata"]["generation"]
        and st.get("updatedReplicas") == st.get("readyReplicas") == app["spec"]["replicas"]
        and progressing(stack, ns, name) == ("True", "RolloutComplete")
    )


def guest_of(endpoint: str) -> str:
    """Which guest answered (the C and Go CGI guests name themselves); raises unless 200."""
    with urllib.request.urlopen(f"http://{endpoint}/", timeout=5) as resp:
        assert resp.status == 200, resp.status
        return str(resp.headers["X-Guest"])


def test_a_rollout_to_a_missing_tag_keeps_serving_and_reports_stuck_then_converges(
    stack: Stack, namespace: str, guests: dict[str, Path]
) -> None:
    v1 = stack.push(guests["cgi"], f"e2e/{namespace}/web", "v1")
    v2 = f"{stack.registry}/e2e/{namespace}/web:v2"  # not pushed yet
    port = free_port(stack.agents["e2e-node-1"].address)
    # A short deadline; the first restart delay must stay below it (the CRD checks).
    spec = {"mode": "http", "http": {"port": port}, "replicas": 2, "progressDeadlineSeconds": 6,
            "backoff": {"initialSeconds": 1, "maxSeconds": 2}}  # fmt: skip
    stack.apply(namespace, wasmapp("web", v1, **spec))
    wait_until(lambda: complete(stack, namespace, "web"), "v1 rolled out")
    before = status(stack, namespace, "web")
    serving = before["module"]
    assert serving.startswith(f"{v1}@sha256:") and before["targetModule"] == serving
    endpoints = before["endpoints"]
    assert len(endpoints) == 2 and {guest_of(e) for e in endpoints} == {"cgi-c"}

    def serves_and_is_ready() -> bool:
        conds = conditions(stack, namespace, "web")
        assert conds["Ready"]["status"] == "True", conds["Ready"]
        assert conds["Available"]["status"] == "True", conds["Available"]
        assert {guest_of(e) for e in endpoints} == {"cgi-c"}
        return True

    with Observing(serves_and_is_ready, "v1 serving, Ready and Available while v2 is stuck"):
        stack.apply(namespace, wasmapp("web", v2, **spec))
        wait_until(
            lambda: progressing(stack, namespace, "web") == ("False", "ProgressDeadlineExceeded"),
            "Progressing=False ProgressDeadlineExceeded",
            timeout=60,
        )
    st = status(stack, namespace, "web")
    conds = conditions(stack, namespace, "web")
    assert st["ready"] == "2/2" and st["updatedReplicas"] == 0
    # What serves and what is asked for, apart; v2 has no digest: it never resolved.
    assert st["module"] == serving
    assert st["targetModule"] == v2
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == (
        "True",
        "ModuleNotFound",
    )
    message = conds["Progressing"]["message"]
    assert "no progress for 6s (progressDeadlineSeconds)" in message and "v2" in message
    assert conds["Progressing"]["lastUpdateTime"] <= conds["Progressing"]["lastTransitionTime"]
    events = json.loads(
        stack.kube.kubectl(
            "get", "events", "-n", namespace, "-o", "json",
            "--field-selector", "involvedObject.name=web,reason=ProgressDeadlineExceeded",
        ).stdout
    )["items"]  # fmt: skip
    assert events and all(e["type"] == "Warning" for e in events)
    wide = stack.kube.kubectl("get", "wasmapp", "web", "-n", namespace, "-o", "wide").stdout
    row = wide.splitlines()[1].split()
    assert row[4:7] == [serving, v2, "ProgressDeadlineExceeded"], wide

    # The tag appears: the agents' pull retries find it and the rollout completes.
    stack.push(guests["gohello"], f"e2e/{namespace}/web", "v2")
    wait_until(lambda: complete(stack, namespace, "web"), "v2 rolled out", timeout=120)
    st = status(stack, namespace, "web")
    conds = conditions(stack, namespace, "web")
    assert st["module"].startswith(f"{v2}@sha256:") and st["targetModule"] == st["module"]
    assert st["module"].split("@")[1] != serving.split("@")[1]
    assert conds["Degraded"]["status"] == "False"
    assert conds["Ready"]["status"] == conds["Available"]["status"] == "True"
    assert {guest_of(e) for e in st["endpoints"]} == {"cgi-go"}
