"""The node agent's API answers only to whom the API server says may ask (issue 9, item 4).

Attacks on the real API server's TokenReview and SubjectAccessReview: no token, a random
token, a tenant reading another tenant's logs, an agent's own token, plain HTTP, a wrong pin."""

from __future__ import annotations

import http.client
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
import yaml

from tests.fixtures.stack import Stack, wasmapp
from tests.fixtures.tenants import TENANT_SA, Tenant
from wasmlet_dev.cluster.identities import issue_token
from wasmlet_dev.cluster.stack import agent_token, http_get, node_status
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def node_of(stack: Stack, ns: str, app: str) -> str:
    def placed() -> str | None:
        for p in stack.placements(ns, app):
            if any(
                i.get("state") == "Running" for i in (p.get("status") or {}).get("instances") or []
            ):
                return str(p["spec"]["node"])
        return None

    node: str = wait_until(placed, f"{ns}/{app} running")
    return node


def grant_log_reader(stack: Stack, ns: str) -> None:
    """What a platform team does: the tenant may read its own apps' logs (deploy/'s role)."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "logs", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "wasmlet-log-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": TENANT_SA, "namespace": ns}],
    }  # fmt: skip
    stack.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(binding))


def test_node_api_refuses_who_may_not_ask(stack: Stack, tenants: Callable[[str], Tenant]) -> None:
    team_a, team_b = tenants("team-a"), tenants("team-b")
    stack.apply(team_a.namespace, wasmapp("victim", stack.modules["long"], replicas=1))
    stack.apply(team_b.namespace, wasmapp("mine", stack.modules["long"], replicas=1))
    grant_log_reader(stack, team_b.namespace)
    victim_node = node_of(stack, team_a.namespace, "victim")
    mine_node = node_of(stack, team_b.namespace, "mine")
    victim_logs = f"/logs/{team_a.namespace}/victim"
    mine_logs = f"/logs/{team_b.namespace}/mine"

    def get(node: str, path: str, token: str | None) -> int:
        return stack.agent_get(node, path, token)[0]

    # The observer (bound to deploy/'s reader roles) reads everything: the routes work.
    assert wait_until(lambda: get(victim_node, victim_logs, None) == 200, "observer reads logs")
    assert get(victim_node, "/apps", None) == 200
    assert get(victim_node, "/metrics", None) == 200

    # No credentials: 401 on everything but the probes.
    for path in (victim_logs, "/apps", "/metrics"):
        code, body = stack.agent_get(victim_node, path, "")
        assert code == 401, (path, body)
    assert get(victim_node, "/healthz", "") == 200
    assert get(victim_node, "/readyz", "") == 200

    # A token the API server does not know: 401.
    assert get(victim_node, victim_logs, secrets.token_urlsafe(32)) == 401

    # A tenant of team-b: its own app's logs yes, team-a's no, node-wide views no.
    tenant_b = issue_token(stack.api, team_b.namespace, TENANT_SA)
    code, body = stack.agent_get(victim_node, victim_logs, tenant_b)
    assert code == 403 and b"wasmapps/log" in body, body
    assert get(victim_node, "/apps", tenant_b) == 403
    assert get(victim_node, "/metrics", tenant_b) == 403
    code, body = stack.agent_get(mine_node, mine_logs, tenant_b)
    assert code == 200, body
    # team-a's tenant without the log role: not even its own logs.
    tenant_a = issue_token(stack.api, team_a.namespace, TENANT_SA)
    assert get(victim_node, victim_logs, tenant_a) == 403

    # An agent's own node-bound token reads no tenant's logs and no other node's apps.
    own = agent_token(stack.api, victim_node)
    assert get(victim_node, victim_logs, own) == 403
    other = next(n for n in stack.agents if n != victim_node)
    assert get(other, "/apps", agent_token(stack.api, victim_node)) == 403


def test_node_api_is_tls_only_and_pinned(stack: Stack) -> None:
    node, other = sorted(stack.agents)[:2]
    st = node_status(stack.api, node)
    assert "BEGIN CERTIFICATE" in st["servingCertificate"]
    # Plain HTTP to the TLS port gets no answer.
    with (
        pytest.raises((OSError, http.client.HTTPException)),
        urllib.request.urlopen(
            f"http://{st['address']}:{st['agentPort']}/healthz", timeout=5
        ) as resp,
    ):
        resp.read()
    # Pinned to another node's certificate: the handshake fails.
    url = f"https://{st['address']}:{st['agentPort']}/healthz"
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        http_get(url, token=stack.observer, pem=node_status(stack.api, other)["servingCertificate"])
    assert http_get(url, token=None, pem=st["servingCertificate"])[0] == 200
