"""deploy/monitoring/ applied to the API server with the Prometheus Operator's real CRDs (from
its Go module), so PodMonitor, ServiceMonitor and PrometheusRule are validated server-side."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fixtures.cluster import Kube
from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_dev.cluster.kubectl import KubectlError

pytestmark = pytest.mark.e2e

MONITORING = repo_root() / "deploy" / "monitoring"
KINDS = ("podmonitors", "servicemonitors", "prometheusrules")


@pytest.fixture(scope="module")
def prometheus_operator_crds(kube: Kube) -> Path:
    out = subprocess.run(
        ["bash", str(repo_root() / "hack" / "prometheus-operator-crds.sh")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    crds = Path(out.stdout.strip().splitlines()[-1])
    kube.kubectl("apply", "--server-side", "-f", crds)
    for kind in KINDS:
        kube.kubectl("wait", "--for=condition=Established", f"crd/{kind}.monitoring.coreos.com")
    return crds


@pytest.fixture
def applied(kube: Kube, prometheus_operator_crds: Path) -> Iterator[None]:
    kube.kubectl("apply", "-k", MONITORING)
    try:
        yield
    finally:
        kube.kubectl("delete", "-k", MONITORING, "--ignore-not-found", "--wait=false")


def test_the_monitoring_component_is_accepted_by_the_api_server(kube: Kube, applied: None) -> None:
    got = json.loads(
        kube.kubectl("get", ",".join(KINDS), "-n", "wasmlet-system", "-o", "json").stdout
    )
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in got["items"]}
    assert set(by_kind) >= {
        ("PodMonitor", "wasmlet-agents"),
        ("ServiceMonitor", "wasmlet-operator"),
        ("PrometheusRule", "wasmlet"),
    }
    pod_monitor = by_kind[("PodMonitor", "wasmlet-agents")]["spec"]["podMetricsEndpoints"][0]
    service_monitor = by_kind[("ServiceMonitor", "wasmlet-operator")]["spec"]["endpoints"][0]
    assert pod_monitor["honorLabels"] is True and service_monitor["honorLabels"] is True
    # The agents serve https and authorize each scrape: the PodMonitor presents a token of
    # an identity the API server says may GET /metrics, and nothing more.
    assert pod_monitor["scheme"] == "https"
    assert pod_monitor["authorization"]["credentials"]["name"] == "wasmlet-metrics-scraper-token"
    scraper = "system:serviceaccount:wasmlet-system:wasmlet-metrics-scraper"
    for verb, what, want in (("get", "/metrics", "yes"), ("get", "/logs", "no"),
                             ("get", "secrets", "no")):  # fmt: skip
        out = kube.kubectl("auth", "can-i", verb, what, f"--as={scraper}", check=False)
        assert out.stdout.strip() == want, (what, out.stdout, out.stderr)
    # What the API server stored is the plain rules file, rule for rule.
    plain = yaml.safe_load((MONITORING / "wasmlet-rules.yml").read_text())
    assert by_kind[("PrometheusRule", "wasmlet")]["spec"]["groups"] == plain["groups"]
    dashboards = json.loads(
        kube.kubectl(
            "get", "configmaps", "-n", "wasmlet-system", "-l", "grafana_dashboard=1", "-o", "json"
        ).stdout
    )["items"]
    assert dashboards and all(
        json.loads(text)["panels"] for cm in dashboards for text in cm["data"].values()
    )
    service = kube.kubectl("get", "service", "wasmlet-operator-metrics", "-n", "wasmlet-system")
    assert service.returncode == 0


def test_the_crds_validate_server_side(kube: Kube, prometheus_operator_crds: Path) -> None:
    # A field the CRD's schema rejects proves these objects are checked, not just stored.
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "bad-scheme", "namespace": "wasmlet-system"},
        "spec": {
            "selector": {},
            "podMetricsEndpoints": [{"port": "api", "scheme": "ftp"}],
        },
    }
    with pytest.raises(KubectlError, match="scheme"):
        kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(bad))
