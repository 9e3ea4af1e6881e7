"""Metrics reach a real Prometheus, and every Grafana dashboard query returns data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.prometheus import Prometheus
from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.cluster.stack import http_get
from wasmlet_dev.ports import free_port
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "wasmlet-dashboard.json"


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


def test_every_dashboard_query_has_data(
    stack: Stack, prometheus: Prometheus, namespace: str
) -> None:
    # Traffic of every kind the dashboard shows: HTTP requests, a crashing guest, instances.
    port = free_port(stack.agents["e2e-node-1"].address)
    stack.apply(namespace, wasmapp("observed", stack.modules["cgi"], mode="http", replicas=3,
                                   http={"port": port}))  # fmt: skip
    stack.apply(namespace, wasmapp("crashes", stack.modules["exit"], replicas=1, args=["3"],
                                   backoff={"initialSeconds": 0.2, "maxSeconds": 1}))  # fmt: skip
    endpoints = wait_until(
        lambda: (
            len(e := (stack.app(namespace, "observed").get("status") or {}).get("endpoints") or [])
            == 3
            and e
        ),
        "endpoints",
    )
    for _ in range(30):
        for endpoint in endpoints:
            assert http_get(f"http://{endpoint}/")[0] == 200
    for title, expr in dashboard_queries():
        wait_until(
            lambda e=expr: prometheus.query(e),
            f"data for panel {title!r}: {expr}",
            timeout=40,
            interval=1.0,
        )
    by_code = f'sum by (code) (wasmlet_http_requests_total{{namespace="{namespace}"}})'
    codes = wait_until(
        lambda: (r := prometheus.query(by_code)) and float(r[0]["value"][1]) >= 90 and r,
        "all 90 requests scraped",
        timeout=20,
    )
    assert {r["metric"]["code"] for r in codes} == {"200"}
    exits = prometheus.query(
        f'sum(wasmlet_instance_exits_total{{namespace="{namespace}", reason="Error"}})'
    )
    assert float(exits[0]["value"][1]) >= 1


def test_dashboard_is_valid_grafana_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["targets"][0]["expr"] for p in dash["panels"])
