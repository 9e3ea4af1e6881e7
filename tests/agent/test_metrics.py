"""The agent's Prometheus metrics after real traffic: every metric in metrics.py, both ways."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import (
    NS,
    Objects,
    configmap_doc,
    configmap_module,
    free_port,
    request,
    wait_until,
    wasm_app,
)

FAST = {"initialSeconds": 0.1, "maxSeconds": 0.5}
PAGE = 65536


def test_metrics_after_traffic(start: StartAgent, oci: OciModule, tmp_path: Path) -> None:
    agent = start(Objects([configmap_doc("text", {"m.wasm": "not wasm"})]), cache_dir=tmp_path)
    port = free_port()
    agent.apply(
        wasm_app("web", oci("cgi"), mode="http", http={"port": port}),
        wasm_app("ticker", oci("long"), replicas=2),
        wasm_app("fails", oci("exit"), args=["3"], backoff=FAST),
        wasm_app("broken", configmap_module("text", "m.wasm"), backoff=FAST),
    )
    agent.wait_report("web", lambda r: r.ready == 1, "serving")
    agent.wait_report("ticker", lambda r: r.ready == 2, "running")
    for path in ("/a", "/b", "/c", "/status/404"):
        request(port, path)
    agent.wait_report("fails", lambda r: r.instances[0].restarts >= 1, "a restart")
    agent.wait_report("broken", lambda r: r.problem is not None, "a pull error")

    m = agent.metric
    version = metadata.version("wasmtime")
    assert m("wasmlet_agent_info", node="test-node", wasmtime=version) == 1
    assert m("wasmlet_build_info", component="agent", version=metadata.version("wasmlet")) == 1
    assert (m("process_resident_memory_bytes") or 0) > 0
    # Cold start phases: pulled and compiled once, loaded, then an instance per start.
    cold = "wasmlet_cold_start_seconds_count"
    assert m(cold, namespace=NS, app="ticker", phase="pull") == 1
    assert m(cold, namespace=NS, app="ticker", phase="compile") == 1
    assert m(cold, namespace=NS, app="ticker", phase="load") == 1
    assert m(cold, namespace=NS, app="ticker", phase="instantiate") is None
    assert m(cold, namespace=NS, app="web", phase="instantiate") == 4
    assert (
        m("wasmlet_cold_start_seconds_sum", namespace=NS, app="web", phase="instantiate") or 0
    ) > 0
    wait_until(
        lambda: m(cold, namespace=NS, app="fails", phase="instantiate"),
        "an instantiation of the failing app",
    )

    def gauge_settled() -> bool:
        return m("wasmlet_instances", namespace="default", app="ticker", state="Running") == 2

    wait_until(gauge_settled, "the instances gauge")
    assert m("wasmlet_instances", namespace="default", app="web", state="Running") == 1
    assert m("wasmlet_instances", namespace="default", app="broken", state="BackOff") == 1
    memory = m("wasmlet_app_linear_memory_bytes", namespace="default", app="ticker")
    assert memory is not None and memory >= 2 * PAGE and memory % PAGE == 0
    # Every app has the CPU series from its start; running instances add to it.
    assert (m("wasmlet_app_cpu_seconds_total", namespace="default", app="ticker") or 0) > 0
    assert m("wasmlet_app_cpu_seconds_total", namespace="default", app="web") is not None

    assert m("wasmlet_http_requests_total", namespace="default", app="web", code="200") == 3
    assert m("wasmlet_http_requests_total", namespace="default", app="web", code="404") == 1
    assert m("wasmlet_http_request_duration_seconds_count", namespace="default", app="web") == 4

    restarts = m(
        "wasmlet_instance_restarts_total", namespace="default", app="fails", reason="Error"
    )
    exits = m("wasmlet_instance_exits_total", namespace="default", app="fails", reason="Error")
    assert restarts is not None and restarts >= 1
    assert exits is not None and exits >= restarts

    assert (m("wasmlet_module_cache_misses_total", kind="module") or 0) >= 3
    assert (m("wasmlet_module_cache_misses_total", kind="compiled") or 0) >= 3
    on_disk = sum(f.stat().st_size for f in (tmp_path / "modules").rglob("*") if f.is_file())
    cache_bytes = m("wasmlet_module_cache_bytes")
    assert cache_bytes is not None and 0 < cache_bytes <= on_disk
    assert (m("wasmlet_module_cache_modules") or 0) >= 3
    assert m("wasmlet_module_cache_evictions") == 0
    assert (m("wasmlet_module_pull_errors_total", reason="NotWasm") or 0) >= 1

    # The same, as Prometheus scrapes it.
    resp = agent.api("/metrics")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    for name in (
        "wasmlet_agent_info",
        "wasmlet_build_info",
        "wasmlet_cold_start_seconds",
        "wasmlet_instances",
        "wasmlet_app_linear_memory_bytes",
        "wasmlet_app_cpu_seconds",
        "wasmlet_http_requests",
        "wasmlet_http_request_duration_seconds",
        "wasmlet_instance_restarts",
        "wasmlet_instance_exits",
        "wasmlet_module_cache_hits",
        "wasmlet_module_cache_misses",
        "wasmlet_module_cache_bytes",
        "wasmlet_module_cache_modules",
        "wasmlet_module_cache_evictions",
        "wasmlet_module_pull_errors",
        "process_resident_memory_bytes",
    ):
        assert name in families, name
        assert families[name].documentation, name
    served = [
        s
        for s in families["wasmlet_http_requests"].samples
        if s.name == "wasmlet_http_requests_total" and s.labels.get("code") == "200"
    ]
    assert [(s.labels["app"], s.value) for s in served] == [("web", 3.0)]
