"""Starting wasmlet's own components next to a cluster: the operator and node agents.

Used by `wasmlet dev up` and by the end-to-end test fixtures, so both run the product the
same way: separate processes, each with its own identity (the operator's ServiceAccount
token; each agent's token bound to its own Node object).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from wasmlet import agent_client
from wasmlet.api.constants import SYSTEM_NAMESPACE
from wasmlet_dev.cluster.identities import ClusterEndpoint, write_kubeconfig
from wasmlet_dev.ports import free_port
from wasmlet_dev.processes import ManagedProcess
from wasmlet_dev.waits import wait_until

OPERATOR_SA = "wasmlet-operator"
AGENT_SA = "wasmlet-agent"
OBSERVER_SA = "wasmlet-observer"
# deploy/21-agent-api-readers.yaml: what an observer (tests, `wasmlet dev`, Prometheus) is bound to.
READER_ROLES = ("wasmlet-log-reader", "wasmlet-metrics-reader", "wasmlet-node-reader")


def ensure_node(api: client.ApiClient, node: str, labels: dict[str, str] | None = None) -> str:
    """The v1 Node an agent's credentials are bound to (a kind cluster already has them).

    Returns its uid. Without a kubelet nothing else happens to it: it is only an identity.
    """
    core = client.CoreV1Api(api)
    obj: Any
    try:
        obj = core.read_node(node)
        return str(obj.metadata.uid)
    except ApiException as e:
        if e.status != 404:
            raise
    body = client.V1Node(
        metadata=client.V1ObjectMeta(
            name=node, labels={"wasmlet.dev/agent": "true", **(labels or {})}
        )
    )
    try:
        obj = core.create_node(body)
        return str(obj.metadata.uid)
    except ApiException as e:
        if e.status != 409:
            raise
        obj = core.read_node(node)
        return str(obj.metadata.uid)


def agent_token(api: client.ApiClient, node: str, seconds: int = 86400) -> str:
    """A wasmlet-agent token bound to Node `node`: the API server records the node name in it,
    and the admission policy in deploy/ limits the agent to that node's objects."""
    uid = ensure_node(api, node)
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[],
            expiration_seconds=seconds,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Node", name=node, uid=uid
            ),
        )
    )
    resp: Any = client.CoreV1Api(api).create_namespaced_service_account_token(
        AGENT_SA, SYSTEM_NAMESPACE, body
    )
    return str(resp.status.token)


def operator_token(api: client.ApiClient, seconds: int = 86400) -> str:
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    resp: Any = client.CoreV1Api(api).create_namespaced_service_account_token(
        OPERATOR_SA, SYSTEM_NAMESPACE, body
    )
    return str(resp.status.token)


def kubeconfig_with(path: Path, endpoint: ClusterEndpoint, token: str, name: str) -> Path:
    return write_kubeconfig(
        path,
        endpoint.server,
        endpoint.ca_data,
        token,
        name=name,
        insecure_skip_tls_verify=endpoint.insecure_skip_tls_verify,
    )


@dataclass
class AgentProcess:
    node: str
    address: str
    process: ManagedProcess
    kubeconfig: Path
    cache_dir: Path
    args: list[str]

    def restart(self) -> None:
        self.process = ManagedProcess.start(f"agent {self.node}", self.args, self.process.log_path)


def start_operator(
    workdir: Path,
    kubeconfig: Path,
    *,
    node_grace_seconds: float = 20.0,
    extra: tuple[str, ...] = (),
    log_name: str = "operator",
) -> ManagedProcess:
    argv = [
        sys.executable, "-m", "wasmlet_operator.main",
        "--kubeconfig", str(kubeconfig),
        "--node-grace-seconds", str(node_grace_seconds),
        *extra,
    ]  # fmt: skip
    return ManagedProcess.start("wasmlet-operator", argv, workdir / "logs" / f"{log_name}.log")


DEV_LOG_MAX_BYTES = 16 * 1024


def agent_argv(
    node: str,
    address: str,
    kubeconfig: Path,
    cache_dir: Path,
    labels: dict[str, str],
    api_port: int = 0,
) -> list[str]:
    return [
        sys.executable, "-m", "wasmlet_agent.main", "node",
        "--node-name", node,
        "--address", address,
        "--api-port", str(api_port),
        "--kubeconfig", str(kubeconfig),
        "--cache-dir", str(cache_dir),
        # Guest log files beside the cache (not /var/log: the dev agents are not root); small
        # files, so that rotation happens in a short run.
        "--log-dir", str(cache_dir / "pods"),
        "--log-max-bytes", str(DEV_LOG_MAX_BYTES),
        "--labels", ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "--heartbeat-seconds", "1",
    ]  # fmt: skip


def start_agent(
    workdir: Path,
    api: client.ApiClient,
    endpoint: ClusterEndpoint,
    node: str,
    address: str,
    labels: dict[str, str] | None = None,
) -> AgentProcess:
    kubeconfig = kubeconfig_with(
        workdir / "identities" / f"{node}.kubeconfig", endpoint, agent_token(api, node), node
    )
    cache_dir = workdir / "agents" / node
    # A fixed API port: a restarted agent is found where Prometheus was told to scrape it,
    # as a kubelet keeps its port (restarts within a test would otherwise leave a dead target).
    argv = agent_argv(node, address, kubeconfig, cache_dir, labels or {}, free_port(address))
    proc = ManagedProcess.start(f"agent {node}", argv, workdir / "logs" / f"{node}.log")
    return AgentProcess(node, address, proc, kubeconfig, cache_dir, argv)


def wait_for_nodes(api: client.ApiClient, nodes: list[str], timeout: float = 60) -> None:
    """Until every agent has registered and reported its address."""
    custom = client.CustomObjectsApi(api)

    def registered() -> bool:
        items: Any = custom.list_cluster_custom_object("wasmlet.dev", "v1alpha1", "wasmnodes")
        ready = {
            i["metadata"]["name"]
            for i in items.get("items", [])
            if (i.get("status") or {}).get("address")
        }
        return set(nodes) <= ready

    wait_until(registered, f"nodes {nodes} to register", timeout=timeout, interval=0.2)


def node_status(api: client.ApiClient, node: str) -> dict[str, Any]:
    obj: Any = client.CustomObjectsApi(api).get_cluster_custom_object(
        "wasmlet.dev", "v1alpha1", "wasmnodes", node
    )
    return dict(obj.get("status") or {})


def agent_api(api: client.ApiClient, node: str) -> str:
    """Base URL of a node agent's API (health, metrics, logs; https), from its WasmNode."""
    return agent_client.agent_url(node_status(api, node))


def agent_pem(api: client.ApiClient, node: str) -> str:
    """The certificate the node's agent API serves, as published in its WasmNode."""
    return str(node_status(api, node)["servingCertificate"])


def observer_token(api: client.ApiClient, seconds: int = 86400) -> str:
    """A token of ServiceAccount wasmlet-system/wasmlet-observer, bound cluster-wide to the agent
    API reader roles in deploy/ (logs, metrics, /apps): how tests and Prometheus read agents."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    try:
        core.create_namespaced_service_account(
            SYSTEM_NAMESPACE,
            client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=OBSERVER_SA)),
        )
    except ApiException as e:
        if e.status != 409:
            raise
    for role in READER_ROLES:
        body = client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=f"{OBSERVER_SA}-{role}"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                      name=role),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=OBSERVER_SA,
                                           namespace=SYSTEM_NAMESPACE)],
        )  # fmt: skip
        try:
            rbac.create_cluster_role_binding(body)
        except ApiException as e:
            if e.status != 409:
                raise
    req = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    resp: Any = core.create_namespaced_service_account_token(OBSERVER_SA, SYSTEM_NAMESPACE, req)
    return str(resp.status.token)


def http_get(
    url: str, timeout: float = 5, *, token: str | None = None, pem: str | None = None
) -> tuple[int, bytes]:
    """GET `url`; for an agent API pass the caller's `token` and the node's `pem`."""
    return agent_client.get(url, token=token, pem=pem, timeout=timeout)


def agent_get(
    api: client.ApiClient, node: str, path: str, token: str | None, timeout: float = 5
) -> tuple[int, bytes]:
    """GET `path` from a node agent's API as the holder of `token`, TLS pinned to the node."""
    st = node_status(api, node)
    return http_get(f"{agent_client.agent_url(st)}{path}", timeout, token=token,
                    pem=st["servingCertificate"])  # fmt: skip
