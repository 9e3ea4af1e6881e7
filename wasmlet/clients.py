"""The Kubernetes API client a component runs with: its kubeconfig, or its pod's identity."""

from __future__ import annotations

from kubernetes import client, config


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """From `kubeconfig` when given (local processes), else the in-cluster ServiceAccount."""
    if kubeconfig:
        api: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return api
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()
