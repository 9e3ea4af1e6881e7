"""deploy/monitoring/ lists every monitoring object, and the default install leaves them out."""

from __future__ import annotations

import yaml

from wasmlet_dev.cluster.binaries import repo_root

DEPLOY = repo_root() / "deploy"


def test_the_default_install_leaves_prometheus_operator_kinds_out() -> None:
    rendered = (DEPLOY / "wasmlet.yaml").read_text()
    assert "monitoring.coreos.com" not in rendered
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert not any("monitoring" in r for r in kustomization["resources"])


def test_the_component_lists_every_manifest_in_its_directory() -> None:
    monitoring = DEPLOY / "monitoring"
    resources = set(yaml.safe_load((monitoring / "kustomization.yaml").read_text())["resources"])
    manifests = {p.name for p in monitoring.glob("*.yaml")} - {"kustomization.yaml"}
    assert resources == manifests
    kinds = {
        doc["kind"]
        for name in resources
        for doc in yaml.safe_load_all((monitoring / name).read_text())
    }
    assert kinds == {"PodMonitor", "ServiceMonitor", "Service", "PrometheusRule", "ConfigMap",
                     "ServiceAccount", "Secret", "ClusterRoleBinding"}  # fmt: skip
    for name in resources:
        for doc in yaml.safe_load_all((monitoring / name).read_text()):
            if doc["kind"] in ("PodMonitor", "ServiceMonitor"):
                endpoints = doc["spec"].get("podMetricsEndpoints") or doc["spec"]["endpoints"]
                assert all(e["honorLabels"] is True for e in endpoints), name
            if doc["kind"] == "ConfigMap":
                assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_scraper_may_read_metrics_only() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "monitoring" / "scraper-identity.yaml").read_text()))
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == "wasmlet-metrics-reader"
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    monitor = yaml.safe_load((DEPLOY / "monitoring" / "agents-podmonitor.yaml").read_text())
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["authorization"]["credentials"]["name"] == secret["metadata"]["name"]
    assert "insecureSkipVerify" not in endpoint["tlsConfig"]
