"""The objects the operator writes, built by plain functions and tested without a cluster."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from wasmlet.api.constants import API_VERSION, APP_LABEL, NODE_LABEL

MANAGED_BY = {"app.kubernetes.io/managed-by": "wasmlet-operator"}


def owner_reference(app: Mapping[str, Any]) -> dict[str, Any]:
    meta = app["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "WasmApp",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def placement_name(app: str, node: str) -> str:
    """Stable, unique per (app, node), valid whatever the lengths of the two names."""
    suffix = hashlib.sha256(node.encode()).hexdigest()[:8]
    return f"{app[:240]}-{suffix}"


def build_placement(
    app: Mapping[str, Any], node: str, replicas: int, revision: str, template: Mapping[str, Any]
) -> dict[str, Any]:
    name = app["metadata"]["name"]
    return {
        "apiVersion": API_VERSION,
        "kind": "WasmPlacement",
        "metadata": {
            "name": placement_name(name, node),
            "namespace": app["metadata"]["namespace"],
            "labels": {APP_LABEL: name, NODE_LABEL: node, **MANAGED_BY},
            "ownerReferences": [owner_reference(app)],
        },
        "spec": {
            "app": name,
            "node": node,
            "replicas": replicas,
            "revision": revision,
            "template": dict(template),
        },
    }


def build_service(app: Mapping[str, Any], port: int) -> dict[str, Any]:
    """A selector-less Service; its EndpointSlice lists the agents that serve the app."""
    name = app["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": app["metadata"]["namespace"],
            "labels": {APP_LABEL: name, **MANAGED_BY},
            "ownerReferences": [owner_reference(app)],
        },
        "spec": {"ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}]},
    }


def _routable_ipv4(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 4 and not ip.is_loopback


def build_endpoint_slice(
    app: Mapping[str, Any], port: int, endpoints: Sequence[tuple[str, str, bool]]
) -> dict[str, Any]:
    """endpoints: (node, address, ready) of every agent that has instances of the app.

    The API server refuses loopback addresses in EndpointSlices, so when agents listen on
    loopback (the local stack) the slice names them by node (addressType FQDN,
    <node>.wasmlet.internal) and clients
    use the addresses in WasmApp status.endpoints instead.
    """
    name = app["metadata"]["name"]
    ipv4 = all(_routable_ipv4(address) for _, address, _ in endpoints)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-wasmlet",
            "namespace": app["metadata"]["namespace"],
            "labels": {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": "wasmlet.dev-operator",
                APP_LABEL: name,
            },
            "ownerReferences": [owner_reference(app)],
        },
        "addressType": "IPv4" if ipv4 else "FQDN",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [address if ipv4 else f"{node}.wasmlet.internal"],
                "conditions": {"ready": ready},
                "hostname": node,
            }
            for node, address, ready in sorted(endpoints)
        ],
    }
