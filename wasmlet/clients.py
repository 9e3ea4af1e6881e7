"""The Kubernetes API client a component runs with: its kubeconfig, or its pod's identity."""

from __future__ import annotations

from kubernetes import client, config


def api_client(kubeconfig: str | None, pool_size: int | None = None) -> client.ApiClient:
    """From `kubeconfig` when given (local processes), else the in-cluster ServiceAccount.

    `pool_size`: connections kept per API server, for a caller with that many threads making
    requests at once (the client's default is 5 per CPU; more are opened and dropped again).
    """
    if kubeconfig:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        cfg = client.Configuration.get_default_copy()
    if pool_size is not None:
        cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)
