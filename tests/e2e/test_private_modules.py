"""Issue 9, hole 5: a tenant naming another tenant's private module by digest is refused, even
though the module sits in every agent's cache; its owner keeps running it."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.stack import Stack, wasmapp
from tests.fixtures.tenants import Tenant
from wasmlet_dev.oci import push_wasm_artifact
from wasmlet_dev.registry import RegistryServer
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def condition(stack: Stack, ns: str, name: str, type_: str) -> dict[str, Any]:
    for c in (stack.app(ns, name).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def test_another_namespace_cannot_run_a_private_module_by_digest(
    stack: Stack,
    registry_auth: RegistryServer,
    guests: dict[str, Path],
    tenants: Callable[[str], Tenant],
) -> None:
    # Bytes of its own (a custom section): the plain guest is public elsewhere in the suite,
    # and a module anyone fetched anonymously is rightly shared.
    name = f"private-{secrets.token_hex(4)}".encode()
    wasm = guests["long"].read_bytes() + bytes([0, 1 + len(name), len(name)]) + name
    digest = "sha256:" + hashlib.sha256(wasm).hexdigest()
    pushed = push_wasm_artifact(registry_auth, "team-a/private", "v1", wasm)
    owner, attacker = tenants("a"), tenants("b")
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "pull"},
        "data": {".dockerconfigjson": base64.b64encode(
            json.dumps(registry_auth.docker_config()).encode()).decode()},
    }  # fmt: skip
    nodes = len(stack.agents)
    mine = wasmapp("mine", pushed.pinned, replicas=nodes)
    mine["spec"]["module"]["oci"]["pullSecret"] = "pull"
    for doc in (secret, mine):
        stack.kube.kubectl(*owner.kubectl_args("apply", "-f", "-"), input=yaml.safe_dump(doc))
    wait_until(
        lambda: condition(stack, owner.namespace, "mine", "Ready").get("status") == "True",
        "the owner's app Ready on every node (the module is in every agent's cache)",
        timeout=60,
    )
    # The attacker's own credentials: the owner's manifest digest, and the module digest
    # behind the owner's tag; no pull secret.
    by_digest = wasmapp("by-digest", pushed.reference, replicas=nodes)
    by_digest["spec"]["module"]["digest"] = digest
    for doc in (wasmapp("by-manifest", pushed.pinned, replicas=nodes), by_digest):
        stack.kube.kubectl(*attacker.kubectl_args("apply", "-f", "-"), input=yaml.safe_dump(doc))
    for name in ("by-manifest", "by-digest"):
        degraded = wait_until(
            lambda n=name: (
                (c := condition(stack, attacker.namespace, n, "Degraded")).get("reason")
                == "Unauthorized"
                and c
            ),
            f"{name} refused for want of credentials",
            timeout=60,
        )
        assert "pullSecret" in degraded["message"], degraded
        status = stack.app(attacker.namespace, name).get("status") or {}
        assert int(status.get("readyReplicas") or 0) == 0, status
    for node in stack.agents:
        running = [a for a in stack.agent_apps(node) if a["namespace"] == attacker.namespace]
        assert all(i["state"] != "Running" for a in running for i in a["instances"]), running
    # The owner is untouched.
    assert condition(stack, owner.namespace, "mine", "Ready").get("status") == "True"
