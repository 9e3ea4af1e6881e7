"""Tenant isolation, attacked as a tenant would: with a namespaced ServiceAccount that may only
manage WasmApps in its own namespace, or with an agent's own node-bound token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.cluster import Kube
from tests.fixtures.stack import Stack, free_port, wait_for, wasmapp

pytestmark = pytest.mark.e2e


def tenant_kubeconfig(kube: Kube, namespace: str) -> Path:
    """A tenant: a ServiceAccount allowed WasmApps (and reading Services) in `namespace` only."""
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "tenant"},
            "rules": [
                {"apiGroups": ["wasmlet.dev"], "resources": ["wasmapps"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["services", "events"], "verbs": ["get"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tenant"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
        },
    ]
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))
    return kube.kubeconfig_for("tenant", namespace)


def as_tenant(
    stack: Stack, kubeconfig: Path, namespace: str, *args: str, input: str | None = None
) -> Any:
    """kubectl with the tenant's token; the result's returncode and stderr say what happened."""
    return stack.kube.kubectl(
        "--kubeconfig", str(kubeconfig), "-n", namespace, *args, input=input, check=False
    )


def cond(stack: Stack, ns: str, name: str, type_: str) -> dict[str, Any]:
    for c in (stack.app(ns, name).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def service(stack: Stack, ns: str, name: str) -> dict[str, Any] | None:
    out = stack.kube.kubectl("get", "svc", name, "-n", ns, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


# --- Service hijack (issue 9, item 3) ------------------------------------------------------


def test_tenant_cannot_hijack_an_existing_service(stack: Stack, namespace: str) -> None:
    # Someone's Service `web` (and an EndpointSlice of the name wasmlet would use) exist first.
    stack.kube.kubectl("create", "service", "clusterip", "web", "--tcp=443:8443", "-n", namespace)
    before = service(stack, namespace, "web")
    assert before is not None
    tenant = tenant_kubeconfig(stack.kube, namespace)
    port = free_port(next(iter(stack.agents.values())).address)
    app = wasmapp("web", stack.modules["cgi"], mode="http", replicas=1, http={"port": port})
    out = as_tenant(stack, tenant, namespace, "apply", "-f", "-", input=yaml.safe_dump(app))
    assert out.returncode == 0, out.stderr
    degraded = wait_for(
        "Degraded NameConflict",
        lambda: (c := cond(stack, namespace, "web", "Degraded")).get("reason") == "NameConflict"
        and c,
    )  # fmt: skip
    assert degraded["status"] == "True"
    assert f"Service {namespace}/web already exists" in degraded["message"]
    ready = cond(stack, namespace, "web", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameConflict")
    wait_for(
        "a Warning Event NameConflict",
        lambda: "NameConflict" in stack.kube.kubectl("get", "events", "-n", namespace).stdout,
    )
    after = service(stack, namespace, "web")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["ports"] == before["spec"]["ports"]
    assert not after["metadata"].get("ownerReferences")
    # Deleting the WasmApp leaves the other Service where it was.
    out = as_tenant(stack, tenant, namespace, "delete", "wasmapp", "web", "--wait=true")
    assert out.returncode == 0, out.stderr
    kept = service(stack, namespace, "web")
    assert kept is not None and kept["metadata"]["uid"] == before["metadata"]["uid"]


def test_own_service_is_created_and_deleted_with_the_app(stack: Stack, namespace: str) -> None:
    port = free_port(next(iter(stack.agents.values())).address)
    stack.apply(namespace, wasmapp("own", stack.modules["cgi"], mode="http", http={"port": port}))
    svc = wait_for("the app's Service", lambda: service(stack, namespace, "own"))
    uid = stack.app(namespace, "own")["metadata"]["uid"]
    assert svc["metadata"]["ownerReferences"][0]["uid"] == uid
    stack.kube.kubectl("delete", "wasmapp", "own", "-n", namespace, "--wait=true")
    wait_for("Service removed with the app", lambda: service(stack, namespace, "own") is None)
