"""Tenant isolation, attacked as a tenant would: with a namespaced ServiceAccount that may only
manage WasmApps in its own namespace, or with an agent's own node-bound token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.cluster import Kube
from tests.fixtures.stack import Stack, free_port, wasmapp
from wasmlet_dev.cluster.stack import agent_argv, agent_token, kubeconfig_with, wait_for_nodes
from wasmlet_dev.processes import ManagedProcess
from wasmlet_dev.waits import wait_until

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
    degraded = wait_until(
        lambda: (c := cond(stack, namespace, "web", "Degraded")).get("reason") == "NameConflict"
        and c,
        "Degraded NameConflict",
    )  # fmt: skip
    assert degraded["status"] == "True"
    assert f"Service {namespace}/web already exists" in degraded["message"]
    ready = cond(stack, namespace, "web", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameConflict")
    wait_until(
        lambda: "NameConflict" in stack.kube.kubectl("get", "events", "-n", namespace).stdout,
        "a Warning Event NameConflict",
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
    svc = wait_until(lambda: service(stack, namespace, "own"), "the app's Service")
    uid = stack.app(namespace, "own")["metadata"]["uid"]
    assert svc["metadata"]["ownerReferences"][0]["uid"] == uid
    stack.kube.kubectl("delete", "wasmapp", "own", "-n", namespace, "--wait=true")
    wait_until(lambda: service(stack, namespace, "own") is None, "Service removed with the app")


# --- hostPath (issue 9, item 1) -------------------------------------------------------------


def host_path_app(name: str, reference: str, path: str, **spec: Any) -> dict[str, Any]:
    return wasmapp(name, reference, volumes=[{"name": "host", "hostPath": {"path": path}}],
                   volumeMounts=[{"name": "host", "mountPath": "/host"}], **spec)  # fmt: skip


def set_allowed_prefixes(kube: Kube, *prefixes: str) -> None:
    patch = json.dumps({"data": {"allowedPrefixes": "\n".join(prefixes)}})
    kube.kubectl("patch", "configmap", "wasmlet-host-paths", "-n", "wasmlet-system",
                 "--type=merge", "-p", patch)  # fmt: skip


def test_api_refuses_host_paths_by_default_and_outside_allowed_prefixes(
    stack: Stack, namespace: str
) -> None:
    tenant = tenant_kubeconfig(stack.kube, namespace)
    agent_dir = str(next(iter(stack.agents.values())).cache_dir)
    # The attack of the issue: mount the agent's directory (other tenants' Secrets, artifacts).
    app = host_path_app("peek", stack.modules["long"], agent_dir)
    out = as_tenant(stack, tenant, namespace, "apply", "-f", "-", input=yaml.safe_dump(app))
    assert out.returncode != 0
    assert "spec.volumes[name=host].hostPath: hostPath volumes are not allowed in namespace" in (
        out.stderr
    )
    # A namespace the administrator labelled may use hostPaths, but only under listed prefixes.
    stack.kube.kubectl("label", "namespace", namespace, "wasmlet.dev/host-path=allowed")
    out = as_tenant(stack, tenant, namespace, "apply", "-f", "-", input=yaml.safe_dump(app))
    assert out.returncode != 0
    assert f"spec.volumes[name=host].hostPath.path: {agent_dir} is not under a prefix" in (
        out.stderr
    )
    assert "none listed" in out.stderr
    assert "..." not in out.stderr
    try:
        set_allowed_prefixes(stack.kube, "/srv/wasmlet-shared")
        for path in ("/srv/wasmlet-shared/../../var/lib", "/srv/wasmlet-shared-not"):
            bad = host_path_app("peek", stack.modules["long"], path)
            out = as_tenant(stack, tenant, namespace, "apply", "-f", "-",
                            input=yaml.safe_dump(bad))  # fmt: skip
            assert out.returncode != 0 and "/srv/wasmlet-shared/" in out.stderr, out.stderr
        good = host_path_app("fine", stack.modules["long"], "/srv/wasmlet-shared/team")
        out = as_tenant(stack, tenant, namespace, "apply", "-f", "-", input=yaml.safe_dump(good))
        assert out.returncode == 0, out.stderr
    finally:
        set_allowed_prefixes(stack.kube)
    # Apps admitted earlier can still be deleted (metadata-only updates pass).
    out = as_tenant(stack, tenant, namespace, "delete", "wasmapp", "fine", "--wait=true")
    assert out.returncode == 0, out.stderr


def test_agent_refuses_a_symlink_into_its_own_directory(
    stack: Stack, namespace: str, tmp_path: Path
) -> None:
    """The API admits a path under an allowed prefix; the agent resolves it and refuses."""
    shared = tmp_path / "shared"
    (shared / "ok").mkdir(parents=True)
    (shared / "ok" / "hello.txt").write_text("hi")
    node = f"e2e-hostpath-{namespace[-6:]}"
    agent_dir = stack.workdir / "agents" / node
    (agent_dir / "instances").mkdir(parents=True)
    (shared / "sneaky").symlink_to(agent_dir / "instances")
    stack.kube.kubectl("label", "namespace", namespace, "wasmlet.dev/host-path=allowed")
    set_allowed_prefixes(stack.kube, str(shared))
    token = agent_token(stack.api, node)
    identity = stack.workdir / "identities" / f"{node}.kubeconfig"
    kubeconfig = kubeconfig_with(identity, stack.kube.endpoint, token, node)
    address = f"{next(iter(stack.agents.values())).address.rsplit('.', 1)[0]}.99"
    argv = agent_argv(node, address, kubeconfig, agent_dir, {"hostpaths": "yes"})
    argv += ["--allowed-host-path-prefix", str(shared)]
    agent = ManagedProcess.start(f"agent {node}", argv, stack.workdir / "logs" / f"{node}.log")
    tenant = tenant_kubeconfig(stack.kube, namespace)
    try:
        wait_for_nodes(stack.api, [node], timeout=60)
        pinned = {"nodeSelector": {"hostpaths": "yes"}, "replicas": 1}
        for app in (
            host_path_app("sneaky", stack.modules["long"], str(shared / "sneaky"), **pinned),
            host_path_app("ok", stack.modules["long"], str(shared / "ok"), **pinned),
        ):
            out = as_tenant(stack, tenant, namespace, "apply", "-f", "-",
                            input=yaml.safe_dump(app))  # fmt: skip
            assert out.returncode == 0, out.stderr  # the admission policy admits both
        degraded = wait_until(
            lambda: (c := cond(stack, namespace, "sneaky", "Degraded")).get("reason")
            == "HostPathForbidden" and c,
            "Degraded HostPathForbidden",
        )  # fmt: skip
        assert degraded["message"].startswith(f"node {node}: spec.volumes[0].hostPath.path: ")
        assert "agent's own directory" in degraded["message"]
        assert cond(stack, namespace, "sneaky", "Ready")["status"] == "False"
        wait_until(
            lambda: (
                "HostPathForbidden" in stack.kube.kubectl("get", "events", "-n", namespace).stdout
            ),
            "a Warning Event HostPathForbidden",
        )
        wait_until(lambda: cond(stack, namespace, "ok", "Ready").get("status") == "True",
                   "the allowed hostPath runs")  # fmt: skip
        for name in ("sneaky", "ok"):
            as_tenant(stack, tenant, namespace, "delete", "wasmapp", name, "--wait=true")
    finally:
        set_allowed_prefixes(stack.kube)
        agent.stop()
        stack.kube.kubectl("delete", "wasmnode", node, "--ignore-not-found", check=False)
        stack.kube.kubectl("delete", "lease", node, "-n", "wasmlet-system", "--ignore-not-found",
                           check=False)  # fmt: skip


# --- Agent self-defence (issue 9, item 6) ---------------------------------------------------


def test_agent_token_cannot_cordon_or_relabel_its_own_node(stack: Stack) -> None:
    agent = stack.agents["e2e-node-1"]
    as_agent = ("--kubeconfig", str(agent.kubeconfig))
    node = agent.node

    def kubectl(*args: str, admin: bool = False) -> Any:
        return stack.kube.kubectl(*(() if admin else as_agent), *args, check=False)

    out = kubectl("patch", "wasmnode", node, "--type=merge", "-p",
                  '{"spec":{"unschedulable":true}}')  # fmt: skip
    assert out.returncode != 0 and "spec.unschedulable: the agent of node" in out.stderr
    for label in ("node-role.wasmlet.dev/edge=true", "admin.wasmlet.dev/tier=gold",
                  "wasmlet.dev/autonomous=true"):  # fmt: skip
        out = kubectl("label", "wasmnode", node, label)
        assert out.returncode != 0, label
        assert "may not set, change or remove the administrator-reserved labels" in out.stderr
    # What an administrator set, the agent can neither change nor remove.
    assert kubectl("label", "wasmnode", node, "admin.wasmlet.dev/tier=gold", admin=True)
    try:
        out = kubectl("label", "wasmnode", node, "admin.wasmlet.dev/tier-")
        assert out.returncode != 0 and "admin.wasmlet.dev/tier" in out.stderr
        # Its own labels (outside the reserved prefixes) it may still write: heartbeats go on.
        out = kubectl("label", "--overwrite", "wasmnode", node, "zone=a")
        assert out.returncode == 0, out.stderr
    finally:
        kubectl("label", "wasmnode", node, "admin.wasmlet.dev/tier-", admin=True)
    # An administrator may cordon.
    out = kubectl("patch", "wasmnode", node, "--type=merge", "-p",
                  '{"spec":{"unschedulable":false}}', admin=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
