"""Credentials for components: ServiceAccount tokens from the TokenRequest API, kubeconfigs."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

# The API server refuses TokenRequests for less than ten minutes.
MIN_TOKEN_SECONDS = 600


def issue_token(
    api: client.ApiClient | Path | str,
    namespace: str,
    service_account: str,
    seconds: int = 3600,
    audiences: list[str] | None = None,
) -> str:
    """A bound token for `namespace/service_account`, valid `seconds`, for the API server's own
    audience unless `audiences` is given. `api` is an ApiClient or a kubeconfig path whose
    identity may create serviceaccounts/token."""
    if seconds < MIN_TOKEN_SECONDS:
        raise ValueError(
            f"seconds={seconds}: the API server issues tokens for at least "
            f"{MIN_TOKEN_SECONDS} seconds; ask for {MIN_TOKEN_SECONDS} or more"
        )
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=seconds)
    )
    if isinstance(api, client.ApiClient):
        return _create_token(api, namespace, service_account, body)
    with admin_client(api) as api_client:
        return _create_token(api_client, namespace, service_account, body)


def _create_token(api_client: client.ApiClient, namespace: str, name: str, body: Any) -> str:
    resp = client.CoreV1Api(api_client).create_namespaced_service_account_token(
        name, namespace, body
    )
    if resp.status is None or not resp.status.token:
        raise RuntimeError(f"the TokenRequest for {namespace}/{name} returned no token")
    return str(resp.status.token)


def admin_client(kubeconfig: Path | str) -> client.ApiClient:
    """An ApiClient for a kubeconfig's current context (close it, or use it in `with`)."""
    api_client: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=os.fspath(kubeconfig), persist_config=False
    )
    return api_client


def kubeconfig_dict(
    server: str,
    ca_data: bytes | None,
    token: str | None = None,
    *,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    name: str = "wasmlet",
    namespace: str | None = None,
    insecure_skip_tls_verify: bool = False,
) -> dict[str, Any]:
    """A one-context kubeconfig. Without `ca_data` the system's CAs verify the server."""
    cluster: dict[str, Any] = {"server": server}
    if ca_data is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_data).decode()
    if insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    user: dict[str, Any] = {}
    if token is not None:
        user["token"] = token
    if client_cert is not None:
        user["client-certificate"] = os.fspath(client_cert)
    if client_key is not None:
        user["client-key"] = os.fspath(client_key)
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace is not None:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path,
    server: str,
    ca_data: bytes | None,
    token: str | None = None,
    *,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    name: str = "wasmlet",
    namespace: str | None = None,
    insecure_skip_tls_verify: bool = False,
) -> Path:
    """Writes a kubeconfig readable only by us (it holds a credential) and returns its path."""
    data = kubeconfig_dict(
        server,
        ca_data,
        token,
        client_cert=client_cert,
        client_key=client_key,
        name=name,
        namespace=namespace,
        insecure_skip_tls_verify=insecure_skip_tls_verify,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


@dataclass(frozen=True)
class ClusterEndpoint:
    """Where a cluster is and how to trust it."""

    server: str
    ca_data: bytes | None
    insecure_skip_tls_verify: bool = False


def cluster_endpoint(
    kubeconfig: Path | str | None = None, context: str | None = None
) -> ClusterEndpoint:
    """The server and CA of a kubeconfig's context (default: $KUBECONFIG, current context), for
    writing kubeconfigs of other identities on the same cluster."""
    cfg = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=os.fspath(kubeconfig) if kubeconfig is not None else None,
        context=context,
        client_configuration=cfg,
        persist_config=False,
    )
    ca_data = Path(cfg.ssl_ca_cert).read_bytes() if cfg.ssl_ca_cert else None
    return ClusterEndpoint(str(cfg.host), ca_data, not cfg.verify_ssl)


def write_kubeconfig_for(
    path: Path,
    api: client.ApiClient | Path | str,
    endpoint: ClusterEndpoint,
    namespace: str,
    service_account: str,
    seconds: int = 3600,
) -> Path:
    """A kubeconfig that authenticates as `namespace/service_account` via a fresh token."""
    token = issue_token(api, namespace, service_account, seconds)
    return write_kubeconfig(
        path,
        endpoint.server,
        endpoint.ca_data,
        token,
        name=f"{namespace}-{service_account}",
        namespace=namespace,
        insecure_skip_tls_verify=endpoint.insecure_skip_tls_verify,
    )
