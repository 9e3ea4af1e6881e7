"""The operator's Prometheus metrics, on a registry passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)  # the operator's memory and CPU
        self.reconciles = Counter(
            "wasmlet_operator_reconciles", "WasmApp reconciles run.", registry=registry
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
        self.apps = Gauge("wasmlet_operator_apps", "WasmApps being reconciled.", registry=registry)
        self.leader = Gauge(
            "wasmlet_operator_leader",
            "1 while this replica holds the leader Lease and acts; 0 while it stands by.",
            registry=registry,
        )
