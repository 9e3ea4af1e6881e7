"""Issue 9, hole 2: an agent reads only the Secrets and ConfigMaps that the placements on its
own node name; and (hole 6) posts Events only in the namespaces where its node runs apps. The
attacks use the agent's own node-bound token, as a compromised node would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fixtures.stack import Stack, wasmapp
from tests.fixtures.tenants import Tenant
from wasmlet.api.constants import SYSTEM_NAMESPACE
from wasmlet.api.references import node_reader
from wasmlet_dev.cluster.identities import admin_client, write_kubeconfig
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


@contextmanager
def as_identity(kubeconfig: Path) -> Iterator[client.CoreV1Api]:
    with admin_client(kubeconfig) as api:
        yield client.CoreV1Api(api)


def status_of(fn: Callable[[], Any]) -> int:
    """The HTTP status of an API call: 200, or the ApiException's."""
    try:
        fn()
    except ApiException as e:
        return int(e.status)
    return 200


def request_token(core: client.CoreV1Api, account: str, node: str) -> tuple[int, str]:
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[],
            expiration_seconds=600,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Node", name=node
            ),
        )
    )
    try:
        resp: Any = core.create_namespaced_service_account_token(account, SYSTEM_NAMESPACE, body)
    except ApiException as e:
        return int(e.status), str(e.body)
    return 200, str(resp.status.token)


def reader_kubeconfig(stack: Stack, node: str) -> Path:
    """The reader identity of `node`, obtained the way its agent obtains it: with the agent's
    own node-bound token."""
    with as_identity(stack.agents[node].kubeconfig) as agent:
        code, token = request_token(agent, node_reader(node), node)
    assert code == 200, token
    endpoint = stack.kube.endpoint
    return write_kubeconfig(
        stack.workdir / "identities" / f"{node}-reader.kubeconfig",
        endpoint.server,
        endpoint.ca_data,
        token,
        insecure_skip_tls_verify=endpoint.insecure_skip_tls_verify,
    )


def can_read(kubeconfig: Path, kind: str, ns: str, name: str) -> int:
    with as_identity(kubeconfig) as core:
        if kind == "secret":
            return status_of(lambda: core.read_namespaced_secret(name, ns))
        return status_of(lambda: core.read_namespaced_config_map(name, ns))


def test_an_agent_reads_only_what_its_placements_name(
    stack: Stack, tenants: Callable[[str], Tenant]
) -> None:
    tenant = tenants("a")
    ns = tenant.namespace
    objects = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
         "stringData": {"password": f"{name}-value"}}
        for name in ("used", "unused")
    ] + [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
          "data": {"a.txt": "x"}}]  # fmt: skip
    app = wasmapp(
        "reader", stack.modules["long"], replicas=1,
        env=[{"name": "PASSWORD",
              "valueFrom": {"secretKeyRef": {"name": "used", "key": "password"}}}],
        volumes=[{"name": "c", "configMap": {"name": "cfg"}}],
        volumeMounts=[{"name": "c", "mountPath": "/c"}],
    )  # fmt: skip
    for doc in (*objects, app):
        stack.kube.kubectl(*tenant.kubectl_args("apply", "-f", "-"), input=yaml.safe_dump(doc))
    # Ready: the agent read the Secret and the ConfigMap through its node's reader.
    wait_until(
        lambda: int((stack.app(ns, "reader").get("status") or {}).get("readyReplicas") or 0) == 1,
        "reader Ready",
        timeout=60,
    )
    (placement,) = stack.placements(ns, "reader")
    node = placement["spec"]["node"]
    other = next(n for n in stack.agents if n != node)

    # The agent's own (shared) identity reads no Secret or ConfigMap at all.
    agent_cfg = stack.agents[node].kubeconfig
    assert can_read(agent_cfg, "secret", ns, "used") == 403
    assert can_read(agent_cfg, "configmap", ns, "cfg") == 403
    # Its node's reader reads exactly what the placement names.
    reader = reader_kubeconfig(stack, node)
    assert can_read(reader, "secret", ns, "used") == 200
    assert can_read(reader, "configmap", ns, "cfg") == 200
    assert can_read(reader, "secret", ns, "unused") == 403
    # Another node's reader, with nothing placed here, reads nothing.
    assert can_read(reader_kubeconfig(stack, other), "secret", ns, "used") == 403
    # The agent cannot mint another node's reader, the operator's identity, or an unbound token.
    # (An admission policy's denial is 422 Invalid, naming the policy.)
    with as_identity(agent_cfg) as agent:
        for account, bound_to in ((node_reader(other), other), (node_reader(other), node),
                                  ("wasmlet-operator", node), ("wasmlet-agent", node)):  # fmt: skip
            code, body = request_token(agent, account, bound_to)
            assert code == 422 and "wasmlet-agent-reader-token" in body, (account, body)
        code, body = request_token(agent, node_reader(node), other)
        assert code == 422 and f"must be bound to Node {node}" in body, body

    # Removing the reference revokes it; deleting the app revokes the rest.
    del app["spec"]["env"]
    stack.kube.kubectl(*tenant.kubectl_args("apply", "-f", "-"), input=yaml.safe_dump(app))
    # (Within the operator's first 10 s grants only widen, while its view fills.)
    wait_until(
        lambda: can_read(reader, "secret", ns, "used") == 403, "the Secret revoked", timeout=60
    )
    assert can_read(reader, "configmap", ns, "cfg") == 200
    stack.kube.kubectl(*tenant.kubectl_args("delete", "wasmapp", "reader"))
    wait_until(
        lambda: can_read(reader, "configmap", ns, "cfg") == 403, "the ConfigMap revoked", timeout=60
    )


def post_event(kubeconfig: Path, ns: str) -> int:
    body = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="forged.", namespace=ns),
        involved_object=client.V1ObjectReference(kind="WasmApp", name="x", namespace=ns),
        reason="Forged",
        message="posted by a compromised node",
        type="Warning",
    )
    with as_identity(kubeconfig) as core:
        return status_of(lambda: core.create_namespaced_event(ns, body))


def test_an_agent_posts_events_only_where_its_node_runs_apps(
    stack: Stack, tenants: Callable[[str], Tenant]
) -> None:
    here, elsewhere = tenants("a").namespace, tenants("b").namespace
    app = wasmapp("evented", stack.modules["long"], replicas=1)
    stack.kube.kubectl("-n", here, "apply", "-f", "-", input=yaml.safe_dump(app))
    wait_until(lambda: len(stack.placements(here, "evented")) == 1, "placed", timeout=60)
    node = stack.placements(here, "evented")[0]["spec"]["node"]
    # The agent's own Events arrive, posted as its node's reader ...
    wait_until(
        lambda: any(
            e.source.component == "wasmlet-agent" and e.reason == "Started"
            for e in client.CoreV1Api(stack.api).list_namespaced_event(here).items
        ),
        "the agent's Started Event in the app's namespace",
        timeout=60,
    )
    # ... its shared identity posts none anywhere ...
    assert post_event(stack.agents[node].kubeconfig, here) == 403
    # ... and the reader only where the node has a placement.
    reader = reader_kubeconfig(stack, node)
    assert post_event(reader, here) == 200
    assert post_event(reader, elsewhere) == 403
    assert post_event(reader, "default") == 403
    # The grant goes with the node's last placement in the namespace.
    stack.kube.kubectl("-n", here, "delete", "wasmapp", "evented")
    wait_until(lambda: post_event(reader, here) == 403, "Events revoked", timeout=60)
