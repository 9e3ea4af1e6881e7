"""Bad apps say why they are not Ready, recover by themselves when the cause is fixed, and
never slow the others; components cannot step outside their RBAC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def cond(stack: Stack, ns: str, name: str, type_: str) -> dict[str, Any]:
    for c in (stack.app(ns, name).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def ready(stack: Stack, ns: str, name: str) -> bool:
    return cond(stack, ns, name, "Ready").get("status") == "True"


def events(stack: Stack, ns: str) -> str:
    return stack.kube.kubectl("get", "events", "-n", ns, "-o", "wide").stdout


def test_unpullable_module_reports_and_recovers(
    stack: Stack, namespace: str, guests: dict[str, Path]
) -> None:
    missing = f"{stack.registry}/e2e/{namespace}/later:v1"
    stack.apply(namespace, wasmapp("later", missing, replicas=2))
    stack.apply(namespace, wasmapp("good", stack.modules["long"], replicas=2))
    wait_until(lambda: ready(stack, namespace, "good"), "good Ready beside the bad app")
    degraded = wait_until(
        lambda: (c := cond(stack, namespace, "later", "Degraded")).get("status") == "True" and c,
        "Degraded with the pull failure",
    )
    assert degraded["reason"] == "ModuleNotFound", degraded
    assert "later" in degraded["message"]
    assert cond(stack, namespace, "later", "Ready")["status"] == "False"
    wait_until(
        lambda: "ModuleNotFound" in events(stack, namespace), "a Warning event naming the cause"
    )
    # Fixed by pushing the module: the agents' back-off retries pull it, no user action.
    stack.push(guests["long"], f"e2e/{namespace}/later", "v1")
    wait_until(lambda: ready(stack, namespace, "later"), "recovered", timeout=90)
    assert cond(stack, namespace, "later", "Degraded")["status"] == "False"


def test_wrong_digest_is_refused(stack: Stack, namespace: str) -> None:
    wrong = "sha256:" + "0" * 64
    app = wasmapp("tampered", stack.modules["long"], replicas=1)
    app["spec"]["module"]["digest"] = wrong
    stack.apply(namespace, app)
    degraded = wait_until(
        lambda: (
            (c := cond(stack, namespace, "tampered", "Degraded")).get("reason") == "DigestMismatch"
            and c
        ),
        "DigestMismatch",
    )
    assert wrong in degraded["message"]


def test_node_selector_matching_no_node_waits_then_recovers(stack: Stack, namespace: str) -> None:
    stack.apply(
        namespace, wasmapp("picky", stack.modules["long"], replicas=2, nodeSelector={"zone": "z"})
    )
    c = wait_until(
        lambda: (
            (c := cond(stack, namespace, "picky", "Ready")).get("reason") == "NoMatchingNodes" and c
        ),
        "NoMatchingNodes",
    )
    assert "zone=z" in c["message"]
    assert stack.placements(namespace, "picky") == []
    wait_until(lambda: "NoMatchingNodes" in events(stack, namespace), "an Event says why")
    stack.apply(
        namespace, wasmapp("picky", stack.modules["long"], replicas=2, nodeSelector={"zone": "b"})
    )
    wait_until(lambda: ready(stack, namespace, "picky"), "placed on the zone-b node")
    assert {p["spec"]["node"] for p in stack.placements(namespace, "picky")} == {"e2e-node-3"}


def test_more_than_the_nodes_hold_is_reported_and_recovers(stack: Stack, namespace: str) -> None:
    # Agents offer 8Gi of linear memory each: three nodes hold six 3Gi instances, not seven.
    stack.apply(
        namespace, wasmapp("huge", stack.modules["long"], replicas=7, limits={"memory": "3Gi"})
    )
    c = wait_until(
        lambda: (
            (c := cond(stack, namespace, "huge", "Ready")).get("reason") == "InsufficientCapacity"
            and c
        ),
        "InsufficientCapacity",
    )
    assert "1 of 7 instances do not fit" in c["message"]
    stack.kube.kubectl("scale", "wasmapp/huge", "-n", namespace, "--replicas=6")
    wait_until(lambda: ready(stack, namespace, "huge"), "fits now", timeout=60)


def test_crashing_guest_backs_off_and_is_reported(stack: Stack, namespace: str) -> None:
    app = wasmapp("crashy", stack.modules["trap"], replicas=1,
                  backoff={"initialSeconds": 0.5, "maxSeconds": 2})  # fmt: skip
    stack.apply(namespace, app)
    c = wait_until(
        lambda: (
            (c := cond(stack, namespace, "crashy", "Degraded")).get("reason") == "Trapped" and c
        ),
        "Degraded: Trapped",
    )
    assert "unreachable" in c["message"].lower() or "trap" in c["message"].lower()
    placement = stack.placements(namespace, "crashy")[0]
    instance = placement["status"]["instances"][0]
    assert instance["reason"] == "Trapped"
    wait_until(
        lambda: stack.placements(namespace, "crashy")[0]["status"]["instances"][0]["restarts"] >= 2,
        "restarted with back-off",
    )


def test_agent_identity_is_confined(stack: Stack, namespace: str) -> None:
    stack.apply(namespace, wasmapp("mine", stack.modules["long"], replicas=3))
    wait_until(lambda: ready(stack, namespace, "mine"), "3 ready")
    agent = stack.agents["e2e-node-1"]
    as_agent = ("--kubeconfig", str(agent.kubeconfig))
    # It cannot change what users asked for ...
    spec_patch = '{"spec":{"replicas":9}}'
    out = stack.kube.kubectl(*as_agent, "-n", namespace, "patch", "wasmapp", "mine",
                             "--type=merge", "-p", spec_patch, check=False)  # fmt: skip
    assert out.returncode != 0 and "forbidden" in out.stderr.lower()
    # ... nor another node's placement status, WasmNode or heartbeat Lease.
    other = next(p for p in stack.placements(namespace, "mine") if p["spec"]["node"] != agent.node)
    patch = json.dumps({"status": {"readyReplicas": 0}})
    out = stack.kube.kubectl(*as_agent, "-n", namespace, "patch", "wasmplacement",
                             other["metadata"]["name"], "--subresource=status", "--type=merge",
                             "-p", patch, check=False)  # fmt: skip
    assert out.returncode != 0
    assert f"the agent of node {agent.node} may only write its own node objects" in out.stderr
    out = stack.kube.kubectl(*as_agent, "label", "wasmnode", "e2e-node-2", "x=y", check=False)
    assert out.returncode != 0 and "may only write its own node objects" in out.stderr
    out = stack.kube.kubectl(*as_agent, "-n", "wasmlet-system", "annotate", "lease",
                             "e2e-node-2", "x=y", check=False)  # fmt: skip
    assert out.returncode != 0
    # Its own objects it may write.
    mine = next(p for p in stack.placements(namespace, "mine") if p["spec"]["node"] == agent.node)
    assert mine["status"]["readyReplicas"] >= 1


def test_operator_identity_cannot_write_agent_objects(stack: Stack, namespace: str) -> None:
    as_operator = ("--kubeconfig", str(stack.operator_kubeconfig))
    out = stack.kube.kubectl(*as_operator, "label", "wasmnode", "e2e-node-1", "x=y", check=False)
    assert out.returncode != 0 and "forbidden" in out.stderr.lower()
    out = stack.kube.kubectl(*as_operator, "auth", "can-i", "patch", "wasmplacements",
                             "--subresource=status", "-n", namespace, check=False)  # fmt: skip
    assert out.stdout.strip() == "no"
