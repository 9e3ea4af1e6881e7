"""The operator's per-app and per-node series: set, updated and removed with their objects."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from wasmlet.version import wasmlet_version
from wasmlet_operator.metrics import OperatorMetrics


def test_app_series_follow_status_and_go_with_the_app() -> None:
    m = OperatorMetrics(CollectorRegistry())
    value = m.registry.get_sample_value
    app = {"namespace": "ns", "app": "web"}
    conditions = [{"type": "Ready", "status": "False"}, {"type": "Degraded", "status": "True"}]
    m.set_app("ns", "web", 3, {"readyReplicas": 1, "updatedReplicas": 2}, conditions)
    assert value("wasmlet_app_spec_replicas", app) == 3
    assert value("wasmlet_app_status_replicas_ready", app) == 1
    assert value("wasmlet_app_status_replicas_updated", app) == 2
    ready = {**app, "condition": "Ready"}
    assert value("wasmlet_app_status_condition", {**ready, "status": "False"}) == 1
    assert value("wasmlet_app_status_condition", {**ready, "status": "True"}) == 0
    m.forget_app("ns", "web")
    assert value("wasmlet_app_spec_replicas", app) is None
    assert value("wasmlet_app_status_condition", {**ready, "status": "False"}) is None


def test_node_readiness_per_node_and_build_info() -> None:
    m = OperatorMetrics(CollectorRegistry())
    value = m.registry.get_sample_value
    m.set_nodes({"a": True, "b": False})
    assert value("wasmlet_node_ready", {"node": "a"}) == 1
    assert value("wasmlet_node_ready", {"node": "b"}) == 0
    assert value("wasmlet_operator_nodes_ready") == 1
    m.set_nodes({"a": True})
    assert value("wasmlet_node_ready", {"node": "b"}) is None
    info = {"component": "operator", "version": wasmlet_version()}
    assert value("wasmlet_build_info", info) == 1
    assert wasmlet_version() != "unknown"
