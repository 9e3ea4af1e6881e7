"""The operator's Prometheus metrics, on a registry passed in."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from wasmlet.version import wasmlet_version

_CONDITION_STATUSES = ("True", "False", "Unknown")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._nodes: set[str] = set()
        self._conditions: dict[tuple[str, str], set[str]] = {}
        ProcessCollector(registry=registry)  # the operator's memory and CPU
        self.build_info = Gauge(
            "wasmlet_build_info", "Always 1; the labels say which wasmlet build runs.",
            ["component", "version"], registry=registry,
        )  # fmt: skip
        self.build_info.labels(component="operator", version=wasmlet_version()).set(1)
        self.reconciles = Counter(
            "wasmlet_operator_reconciles", "WasmApp reconciles run.", registry=registry
        )
        self.reconcile_errors = Counter(
            "wasmlet_operator_reconcile_errors",
            "WasmApp reconciles that failed, by reason (the API's reason, or the error's type).",
            ["reason"],
            registry=registry,
        )
        self.reconcile_duration = Histogram(
            "wasmlet_operator_reconcile_duration_seconds",
            "Time one WasmApp reconcile takes, API writes included.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.api_requests = Counter(
            "wasmlet_operator_api_requests",
            "Kubernetes API requests made by reconciles (watches not included).",
            ["operation"],
            registry=registry,
        )
        self.nodes_ready = Gauge(
            "wasmlet_operator_nodes_ready", "wasmlet nodes whose heartbeat is fresh.",
            registry=registry,
        )  # fmt: skip
        self.node_ready = Gauge(
            "wasmlet_node_ready",
            "1 while the node's heartbeat Lease is fresh, 0 once it is stale (per WasmNode).",
            ["node"],
            registry=registry,
        )
        self.apps = Gauge("wasmlet_operator_apps", "WasmApps being reconciled.", registry=registry)
        self.leader = Gauge(
            "wasmlet_operator_leader",
            "1 while this replica holds the leader Lease and acts; 0 while it stands by.",
            registry=registry,
        )
        # What kube-state-metrics gives for Deployments, for WasmApps (set by the leader).
        self.app_replicas = Gauge(
            "wasmlet_app_spec_replicas", "Replicas a WasmApp asks for.",
            ["namespace", "app"], registry=registry,
        )  # fmt: skip
        self.app_ready = Gauge(
            "wasmlet_app_status_replicas_ready", "Instances of a WasmApp that are ready.",
            ["namespace", "app"], registry=registry,
        )  # fmt: skip
        self.app_updated = Gauge(
            "wasmlet_app_status_replicas_updated",
            "Instances of a WasmApp running its current revision.",
            ["namespace", "app"],
            registry=registry,
        )
        self.app_condition = Gauge(
            "wasmlet_app_status_condition",
            "1 for a WasmApp condition's current status, 0 for the other statuses.",
            ["namespace", "app", "condition", "status"],
            registry=registry,
        )

    def set_app(
        self,
        namespace: str,
        app: str,
        desired: int,
        status: Mapping[str, Any],
        conditions: Sequence[Mapping[str, Any]],
    ) -> None:
        self.app_replicas.labels(namespace=namespace, app=app).set(desired)
        self.app_ready.labels(namespace=namespace, app=app).set(
            int(status.get("readyReplicas") or 0)
        )
        self.app_updated.labels(namespace=namespace, app=app).set(
            int(status.get("updatedReplicas") or 0)
        )
        for c in conditions:
            self._conditions.setdefault((namespace, app), set()).add(c["type"])
            for s in _CONDITION_STATUSES:
                self.app_condition.labels(
                    namespace=namespace, app=app, condition=c["type"], status=s
                ).set(1 if c["status"] == s else 0)

    def forget_app(self, namespace: str, app: str) -> None:
        """Remove a deleted WasmApp's series (a stale 0 would look like a broken app)."""
        for gauge in (self.app_replicas, self.app_ready, self.app_updated):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, app)
        for condition in self._conditions.pop((namespace, app), set()):
            for s in _CONDITION_STATUSES:
                self.app_condition.remove(namespace, app, condition, s)

    def set_nodes(self, ready: Mapping[str, bool]) -> None:
        """Per-node readiness; a deleted WasmNode's series goes away with it."""
        self.nodes_ready.set(sum(ready.values()))
        for node, is_ready in ready.items():
            self.node_ready.labels(node=node).set(1 if is_ready else 0)
        for gone in self._nodes - set(ready):
            self.node_ready.remove(gone)
        self._nodes = set(ready)
