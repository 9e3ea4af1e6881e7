"""An agent whose identity lacks a permission it needs stops at start, naming it, before it
writes anything (no WasmNode, no Lease): not a 403 deep in a watch minutes later."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fixtures.stack import Stack
from wasmlet.api.constants import GROUP, SYSTEM_NAMESPACE, WASMNODES
from wasmlet_dev.cluster.identities import issue_token
from wasmlet_dev.cluster.stack import AGENT_SA, kubeconfig_with

pytestmark = pytest.mark.e2e

# deploy/20-agent-rbac.yaml's Roles in wasmlet-system, granted whole.
SYSTEM_ROLES = ("wasmlet-agent-heartbeat", "wasmlet-agent-reader-token")


def without_status_patch(rules: list[Any]) -> list[Any]:
    """The agent's ClusterRole rules minus `patch` on wasmplacements/status."""
    out = []
    for r in rules:
        if "wasmplacements/status" in (r.resources or []):
            r = client.V1PolicyRule(api_groups=r.api_groups, resources=r.resources,
                                    verbs=[v for v in r.verbs if v != "patch"])  # fmt: skip
        out.append(r)
    return out


@pytest.fixture
def partial_agent(stack: Stack, namespace: str) -> Iterator[str]:
    """A ServiceAccount in `namespace` with every grant of wasmlet-agent but one."""
    rbac = client.RbacAuthorizationV1Api(stack.api)
    name = f"preflight-agent-{secrets.token_hex(3)}"
    subject = client.RbacV1Subject(kind="ServiceAccount", name="agent", namespace=namespace)
    client.CoreV1Api(stack.api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="agent"))
    )
    full = rbac.read_cluster_role(AGENT_SA)
    rules = without_status_patch(full.rules)
    rbac.create_cluster_role(
        client.V1ClusterRole(metadata=client.V1ObjectMeta(name=name), rules=rules)
    )
    rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=name), subjects=[subject],
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                  name=name)))  # fmt: skip
    for role in SYSTEM_ROLES:
        rbac.create_namespaced_role_binding(SYSTEM_NAMESPACE, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=f"{name}-{role}"), subjects=[subject],
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                      name=role)))  # fmt: skip
    try:
        yield issue_token(stack.api, namespace, "agent")
    finally:
        for role in SYSTEM_ROLES:
            rbac.delete_namespaced_role_binding(f"{name}-{role}", SYSTEM_NAMESPACE)
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


def test_an_agent_missing_a_permission_stops_at_start_naming_it(
    stack: Stack, namespace: str, partial_agent: str, tmp_path: Path
) -> None:
    node = f"preflight-{secrets.token_hex(3)}"
    kubeconfig = kubeconfig_with(tmp_path / "agent.kubeconfig", stack.kube.endpoint,
                                 partial_agent, "partial")  # fmt: skip
    argv = [sys.executable, "-m", "wasmlet_agent.main", "node", "--node-name", node,
            "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"),
            "--log-dir", str(tmp_path / "pods"), "--api-port", "0"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 3, out.stderr[-3000:]
    assert "cannot start" in out.stderr
    assert f"patch wasmplacements.{GROUP}/status" in out.stderr, out.stderr[-3000:]
    assert f"system:serviceaccount:{namespace}:agent" in out.stderr
    assert "deploy/20-agent-rbac.yaml" in out.stderr
    # Named alone: what it holds is not listed as missing.
    assert f"list wasmplacements.{GROUP}" not in out.stderr
    # It stopped before writing: no WasmNode registered under that name.
    with pytest.raises(ApiException) as e:
        client.CustomObjectsApi(stack.api).get_cluster_custom_object(
            GROUP, "v1alpha1", WASMNODES, node
        )
    assert e.value.status == 404
