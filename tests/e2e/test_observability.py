"""Metrics reach a real Prometheus, and every query of the generated Grafana dashboards (their
panels and their variables) returns data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fixtures.prometheus import Prometheus
from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.cluster.stack import http_get
from wasmlet_dev.ports import free_port
from wasmlet_dev.waits import WaitTimeout, wait_until

pytestmark = pytest.mark.e2e

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "dashboards"


def dashboard_queries(namespace: str) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, with the variables set as a user would: this
    test's namespace, all apps, all nodes."""
    values = {"$namespace": namespace, "$app": ".*", "$node": ".*", "$__rate_interval": "30s"}
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets") or []:
                expr = target["expr"]
                for var, value in values.items():
                    expr = expr.replace(var, value)
                out.append((f"{path.name}: {panel['title']}", expr))
        for var in board["templating"]["list"]:
            if m := re.fullmatch(r"label_values\((.+), (\w+)\)", var.get("query") or ""):
                selector = m.group(1).replace("$namespace", namespace)
                out.append(
                    (f"{path.name}: ${var['name']}", f"group by ({m.group(2)}) ({selector})")
                )
    assert len(out) > 30
    return out


def test_every_dashboard_query_has_data(
    stack: Stack, prometheus: Prometheus, namespace: str
) -> None:
    # Traffic of every kind the dashboard shows: HTTP requests, a crashing guest, instances.
    port = free_port(stack.agents["e2e-node-1"].address)
    stack.apply(namespace, wasmapp("observed", stack.modules["cgi"], mode="http", replicas=3,
                                   http={"port": port}))  # fmt: skip
    stack.apply(namespace, wasmapp("crashes", stack.modules["exit"], replicas=1, args=["3"],
                                   backoff={"initialSeconds": 0.2, "maxSeconds": 1}))  # fmt: skip
    # A guest that traps on every request: the 5xx panels.
    trap_port = free_port(stack.agents["e2e-node-1"].address)
    stack.apply(namespace, wasmapp("traps", stack.modules["trap"], mode="http", replicas=1,
                                   http={"port": trap_port}))  # fmt: skip
    endpoints = wait_until(
        lambda: (
            len(e := (stack.app(namespace, "observed").get("status") or {}).get("endpoints") or [])
            == 3
            and e
        ),
        "endpoints",
    )
    traps = wait_until(
        lambda: (stack.app(namespace, "traps").get("status") or {}).get("endpoints"), "traps"
    )
    for _ in range(30):
        for endpoint in endpoints:
            assert http_get(f"http://{endpoint}/")[0] == 200
    # Rates need the counters to grow between scrapes: traffic continues while waiting.
    for where, expr in dashboard_queries(namespace):

        def has_data(e: str = expr) -> bool:
            for endpoint in [*endpoints, *traps]:
                http_get(f"http://{endpoint}/")
            return bool(prometheus.query(e))

        try:
            wait_until(has_data, f"data for {where}: {expr}", timeout=120, interval=0.5)
        except WaitTimeout as e:
            raw = prometheus.query(f'wasmlet_http_requests_total{{namespace="{namespace}"}}')
            placed = stack.kube.kubectl("get", "wasmplacements", "-A", "-o", "wide").stdout
            raise AssertionError(
                f"{e}\ntargets:\n{prometheus.target_health()}\nrequest counters: {raw}\n"
                f"placements:\n{placed}"
            ) from e
    by_code = f'sum by (app, code) (wasmlet_http_requests_total{{namespace="{namespace}"}})'
    observed = wait_until(
        lambda: [
            r
            for r in prometheus.query(by_code)
            if r["metric"]["app"] == "observed" and float(r["value"][1]) >= 90
        ],
        "all 90 requests scraped",
        timeout=20,
    )
    assert {r["metric"]["code"] for r in observed} == {"200"}
    trapped = [r for r in prometheus.query(by_code) if r["metric"]["app"] == "traps"]
    assert trapped and all(r["metric"]["code"].startswith("5") for r in trapped)
    exits = prometheus.query(
        f'sum(wasmlet_instance_exits_total{{namespace="{namespace}", reason="Error"}})'
    )
    assert float(exits[0]["value"][1]) >= 1
