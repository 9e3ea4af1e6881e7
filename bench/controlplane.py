"""Control-plane benchmarks: the product end to end on the local control plane.

    python -m bench.controlplane [--quick]

Starts what `make up` starts (etcd, kube-apiserver, kube-controller-manager, a registry, the
operator and three node agents as separate processes) and measures:

- `kubectl apply` of one WasmApp to its first instance running (seen by polling the agents'
  APIs) and to Ready in status, over 20 apps; baseline in the same run: `kubectl apply` of a
  ConfigMap to its creation being visible (the API round trip every apply pays);
- scaling one app 0 -> 50 -> 0 on three agents: time to converge each way;
- 200 and 1000 WasmApps applied at once (`kubectl apply --server-side`, one request per
  object, as a platform team's CD tool applies): time until all are Ready, the operator's
  memory (RSS) and Kubernetes API requests per reconcile (from the operator's own metrics).

Writes bench/results/controlplane.json and prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from bench.common import replace_text
from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_dev.cluster.cluster import LocalCluster
from wasmlet_dev.cluster.identities import admin_client
from wasmlet_dev.cluster.kubectl import deploy_files
from wasmlet_dev.cluster.stack import (
    agent_get,
    kubeconfig_with,
    observer_token,
    operator_token,
    start_agent,
    start_operator,
    wait_for_nodes,
)
from wasmlet_dev.oci import push_wasm_artifact
from wasmlet_dev.ports import free_port
from wasmlet_dev.registry import start_registry
from wasmlet_dev.waits import wait_until
from wasmlet_dev.wasm_build import build_c

ROOT = repo_root()
RESULTS = ROOT / "bench" / "results" / "controlplane.json"
LONG_RUNNING = ROOT / "examples" / "modules" / "hello.c"  # sleeps between lines: idle


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(round(q * (len(ordered) - 1)), len(ordered) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p99": pct(values, 0.99),
        "min": min(values),
        "max": max(values),
    }


class Bench:
    def __init__(self, cluster: LocalCluster, api: client.ApiClient, registry: str) -> None:
        self.cluster, self.api, self.registry = cluster, api, registry
        self.custom = client.CustomObjectsApi(api)
        self.kubectl = cluster.kubectl()
        self.nodes: list[str] = []
        self.observer = ""  # a token allowed to read the agents' /apps
        self.operator_metrics = ""
        self.operator_pid = 0
        self.components: dict[str, list[int]] = {}  # name -> pids, for CPU accounting
        self.profile_dir: Path | None = None  # py-spy the operator and an agent in bench_many

    def apply(self, ns: str, docs: list[dict[str, Any]], server_side: bool = False) -> None:
        # A measurement, not a check: a slow apply of 1000 objects is a result, not an error.
        # Server-side apply sends one request per object; client-side, a GET and a POST.
        side = ["--server-side"] if server_side else []
        self.kubectl("apply", *side, "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs),
                     timeout=900)  # fmt: skip

    def app(self, name: str, reference: str, replicas: int = 1) -> dict[str, Any]:
        return {
            "apiVersion": "wasmlet.dev/v1alpha1",
            "kind": "WasmApp",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "module": {"oci": {"reference": reference, "insecure": True}},
                "limits": {"memory": "1Mi"},
            },
        }

    def apps(self, ns: str) -> list[dict[str, Any]]:
        items: Any = self.custom.list_namespaced_custom_object(
            "wasmlet.dev", "v1alpha1", ns, "wasmapps"
        )
        return list(items["items"])

    def api_requests(self) -> dict[str, float]:
        """kube-apiserver's request counts so far by verb and resource (its /metrics)."""
        text = self.kubectl("get", "--raw", "/metrics", timeout=60).stdout
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "apiserver_request":
                continue
            for sample in family.samples:
                if sample.name != "apiserver_request_total":
                    continue
                labels = sample.labels
                sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
                key = f"{labels.get('verb', '')} {labels.get('resource', '')}{sub}"
                out[key] = out.get(key, 0.0) + sample.value
        return out

    def event_reasons(self, ns: str) -> dict[str, int]:
        """Events in `ns` by who posted them and why, most first."""
        items = client.CoreV1Api(self.api).list_namespaced_event(ns).items
        counts: dict[str, int] = {}
        for e in items:
            who = e.reporting_component or (e.source.component if e.source else "") or "?"
            key = f"{who} {e.type} {e.reason}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def placements(self, ns: str) -> list[dict[str, Any]]:
        items: Any = self.custom.list_namespaced_custom_object(
            "wasmlet.dev", "v1alpha1", ns, "wasmplacements"
        )
        return list(items["items"])

    def running(self, ns: str, name: str) -> int:
        total = 0
        for node in self.nodes:
            code, body = agent_get(self.api, node, "/apps", self.observer)
            assert code == 200, body
            for a in json.loads(body):
                if (a["namespace"], a["name"]) == (ns, name):
                    total += sum(1 for i in a["instances"] if i["state"] == "Running")
        return total

    def namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    def operator_samples(self) -> dict[str, float]:
        with urllib.request.urlopen(self.operator_metrics, timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[s.name] = out.get(s.name, 0.0) + s.value
        return out

    def operator_rss(self) -> int:
        for line in Path(f"/proc/{self.operator_pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def component_cpu(components: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in pids) for name, pids in components.items()}


def start_profile(b: Bench, name: str) -> list[subprocess.Popen[bytes]]:
    """py-spy recording the operator and the first agent (collapsed stacks, 50 Hz), or
    nothing without a dir."""
    if b.profile_dir is None:
        return []
    b.profile_dir.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    targets = {"operator": b.operator_pid, "agent": b.components["agents"][0]}
    return [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "50",
                "--format",
                "raw",
                "--output",
                str(b.profile_dir / f"{who}-{name}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for who, pid in targets.items()
    ]


def stop_profile(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    for spy in spies:
        spy.wait(timeout=60)


def _seconds(stamp: str | None, since: float) -> float | None:
    if not stamp:
        return None
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() - since


def _ready_since(obj: dict[str, Any], since: float) -> float | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return _seconds(c.get("lastTransitionTime"), since)
    return None


def milestones(
    placements: list[dict[str, Any]], apps: list[dict[str, Any]], since: float
) -> dict[str, float | None]:
    """When the last app was created, its placement created and Ready (the agents' status),
    and the app Ready (the operator's status), in seconds after `since`."""

    def last(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(max(known), 1) if known else None

    return {
        "apps_created": last(
            [_seconds(a["metadata"].get("creationTimestamp"), since) for a in apps]
        ),
        "placements_created": last(
            [_seconds(p["metadata"].get("creationTimestamp"), since) for p in placements]
        ),
        "placements_ready": last([_ready_since(p, since) for p in placements]),
        "apps_ready": last([_ready_since(a, since) for a in apps]),
    }


def wait(check: Any, timeout: float, interval: float = 0.02) -> float:
    """Seconds until `check` holds (a measurement: errors in `check` are not retried)."""
    start = time.monotonic()
    wait_until(check, "convergence", timeout=timeout, interval=interval, retry_on=())
    return time.monotonic() - start


def bench_apply_latency(b: Bench, ref: str, n: int) -> dict[str, Any]:
    ns = b.namespace("bench-latency")
    first, ready, baseline = [], [], []
    for i in range(n):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}
        t0 = time.monotonic()
        b.apply(ns, [cm])
        baseline.append(time.monotonic() - t0)
        name = f"lat-{i:02d}"
        t0 = time.monotonic()
        b.apply(ns, [b.app(name, ref)])
        got_first = got_ready = None
        while got_ready is None or got_first is None:
            now = time.monotonic() - t0
            if now > 30:
                raise TimeoutError(f"{name} not ready")
            if got_first is None and b.running(ns, name) >= 1:
                got_first = now
            if got_ready is None:
                st = (
                    b.custom.get_namespaced_custom_object(
                        "wasmlet.dev", "v1alpha1", ns, "wasmapps", name
                    ).get("status")
                    or {}
                )
                if st.get("readyReplicas") == 1:
                    got_ready = now
            time.sleep(0.005)
        first.append(got_first)
        ready.append(got_ready)
    return {
        "apply_to_first_instance_running_s": summary(first),
        "apply_to_ready_in_status_s": summary(ready),
        "baseline_kubectl_apply_configmap_s": summary(baseline),
    }


def bench_scale(b: Bench, ref: str, top: int) -> dict[str, Any]:
    ns = b.namespace("bench-scale")
    b.apply(ns, [b.app("scaler", ref, replicas=0)])
    time.sleep(1)
    b.kubectl("scale", "wasmapp/scaler", "-n", ns, f"--replicas={top}")
    up_running = wait(lambda: b.running(ns, "scaler") == top, 120, 0.05)
    up_ready = wait(lambda: (b.custom.get_namespaced_custom_object(
        "wasmlet.dev", "v1alpha1", ns, "wasmapps", "scaler").get("status") or {}).get(
        "readyReplicas") == top, 120, 0.05) + up_running  # fmt: skip
    b.kubectl("scale", "wasmapp/scaler", "-n", ns, "--replicas=0")
    down = wait(lambda: b.running(ns, "scaler") == 0, 120, 0.05)
    return {
        "replicas": top,
        "scale_up_all_running_s": up_running,
        "scale_up_ready_in_status_s": up_ready,
        "scale_down_all_stopped_s": down,
    }


def bench_many(b: Bench, ref: str, count: int) -> dict[str, Any]:
    ns = b.namespace(f"bench-many-{count}")
    before = b.operator_samples()
    requests_before = b.api_requests()
    cpu_before = component_cpu(b.components)
    docs = [b.app(f"app-{i:04d}", ref) for i in range(count)]
    spy = start_profile(b, f"many-{count}")
    t0 = time.monotonic()
    wall0 = time.time()
    b.apply(ns, docs, server_side=True)
    applied = time.monotonic() - t0

    def all_ready() -> bool:
        items = b.apps(ns)
        return len(items) == count and all(
            (i.get("status") or {}).get("readyReplicas") == 1 for i in items
        )

    ready = wait(all_ready, 900, 1.0) + applied
    stop_profile(spy)
    phases = milestones(b.placements(ns), b.apps(ns), wall0)
    cpu_after = component_cpu(b.components)
    served = b.api_requests()
    after = b.operator_samples()
    reconciles = after.get("wasmlet_operator_reconciles_total", 0) - before.get(
        "wasmlet_operator_reconciles_total", 0
    )
    requests = after.get("wasmlet_operator_api_requests_total", 0) - before.get(
        "wasmlet_operator_api_requests_total", 0
    )
    result = {
        "apps": count,
        "kubectl_apply_s": applied,
        "all_ready_s": ready,
        "operator_rss_bytes": b.operator_rss(),
        "reconciles": reconciles,
        "api_requests": requests,
        "api_requests_per_reconcile": requests / reconciles if reconciles else None,
        "reconcile_s_mean": (
            after.get("wasmlet_operator_reconcile_duration_seconds_sum", 0)
            - before.get("wasmlet_operator_reconcile_duration_seconds_sum", 0)
        )
        / reconciles
        if reconciles
        else None,
        # Where the time goes: seconds from the apply until the last object reached each
        # milestone (API timestamps, 1 s resolution), and each component's CPU seconds.
        "milestones_s": phases,
        "events": b.event_reasons(ns),
        # What kube-apiserver served meanwhile, most first (watch events are not requests).
        "apiserver_requests": dict(
            sorted(
                (
                    (k, round(v - requests_before.get(k, 0.0)))
                    for k, v in served.items()
                    if v - requests_before.get(k, 0.0) >= 10
                ),
                key=lambda kv: -kv[1],
            )
        ),
        "cpu_s": {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after},
    }
    b.kubectl("delete", "namespace", ns, "--wait=false")
    return result


def run(
    quick: bool, only_many: int | None = None, profile_dir: Path | None = None
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="wasmlet-bench-"))
    cluster = LocalCluster(work / "cluster", preinstall=[ROOT / "crds"])
    procs = []
    with cluster:
        b_api = admin_client(cluster.kubeconfig)
        # What the process-mode cluster installs (not the kustomization nor the workloads).
        for f in deploy_files(ROOT / "deploy"):
            cluster.kubectl()("apply", "--server-side", "-f", str(f))
        port = free_port()
        procs.append(start_registry(work / "registry", port=port))
        wasm = build_c(LONG_RUNNING, work / "hello.wasm").read_bytes()
        ref, _ = push_wasm_artifact(f"127.0.0.1:{port}", "bench/hello", "v1", wasm)
        endpoint = cluster.endpoint
        nodes = [f"bench-node-{i}" for i in range(1, 4)]
        agents = [start_agent(work, b_api, endpoint, n, f"127.0.9.{i}")
                  for i, n in enumerate(nodes, start=1)]  # fmt: skip
        procs += [a.process for a in agents]
        op_kubeconfig = kubeconfig_with(work / "operator.kubeconfig", endpoint,
                                        operator_token(b_api), "wasmlet-operator")  # fmt: skip
        metrics_port = free_port()
        operator = start_operator(work, op_kubeconfig,
                                  extra=("--metrics-port", str(metrics_port)))  # fmt: skip
        procs.append(operator)
        try:
            wait_for_nodes(b_api, nodes)
            b = Bench(cluster, b_api, f"127.0.0.1:{port}")
            b.nodes, b.observer = list(nodes), observer_token(b_api)
            b.operator_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
            b.operator_pid = operator.pid
            b.profile_dir = profile_dir
            by_name: dict[str, list[int]] = {}
            for proc in cluster.processes:
                by_name.setdefault(proc.name, []).append(proc.pid)
            b.components = {**by_name, "operator": [operator.pid],
                            "agents": [a.process.pid for a in agents]}  # fmt: skip
            wait(lambda: _reachable(b.operator_metrics), 60, 0.2)
            results: dict[str, Any] = {"machine": {"cpus": 2}, "agents": 3}
            if only_many is not None:  # one measurement, e.g. under a profiler
                results["many"] = [bench_many(b, ref, only_many)]
                return results
            results["apply_latency"] = bench_apply_latency(b, ref, 5 if quick else 20)
            results["scale"] = bench_scale(b, ref, 10 if quick else 50)
            results["many"] = [bench_many(b, ref, n) for n in ((50,) if quick else (200, 1000))]
            return results
        finally:
            for p in reversed(procs):
                p.stop()
            b_api.close()


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def markdown(r: dict[str, Any]) -> str:
    lat = r["apply_latency"]
    rows = [
        "| measurement | p50 | p99 | min | max | n |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, label in (
        ("apply_to_first_instance_running_s", "`kubectl apply` → first instance running"),
        ("apply_to_ready_in_status_s", "`kubectl apply` → Ready in status"),
        ("baseline_kubectl_apply_configmap_s", "baseline: `kubectl apply` of a ConfigMap"),
    ):
        s = lat[key]
        ms = {k: f"{s[k] * 1000:.0f} ms" for k in ("p50", "p99", "min", "max")}
        rows.append(
            f"| {label} | {ms['p50']} | {ms['p99']} | {ms['min']} | {ms['max']} | {s['n']} |"
        )
    sc = r["scale"]
    rows += [
        "",
        f"Scale 0 → {sc['replicas']} → 0 on 3 agents: all running in "
        f"{sc['scale_up_all_running_s']:.2f} s "
        f"(Ready in status {sc['scale_up_ready_in_status_s']:.2f} s), "
        f"all stopped in {sc['scale_down_all_stopped_s']:.2f} s.",
        "",
        "| WasmApps applied at once | kubectl apply | all Ready | operator RSS "
        "| API requests per reconcile | CPU seconds used meanwhile, by process |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in r["many"]:
        per = m["api_requests_per_reconcile"]
        cpu = sorted((m.get("cpu_s") or {}).items(), key=lambda kv: -kv[1])
        rows.append(
            f"| {m['apps']} | {m['kubectl_apply_s']:.1f} s | {m['all_ready_s']:.1f} s | "
            f"{m['operator_rss_bytes'] / 2**20:.0f} MiB | "
            f"{f'{per:.2f}' if per is not None else '-'} | "
            f"{', '.join(f'{k} {v:.0f}' for k, v in cpu) or '-'} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.controlplane")
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--many",
        type=int,
        default=None,
        help="only apply this many WasmApps at once; prints, writes no results",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record the operator with py-spy (collapsed stacks) into DIR during each "
        "many-apps measurement (pip install py-spy)",
    )
    args = p.parse_args(argv)
    results = run(args.quick, args.many, args.profile)
    if args.many is not None:
        print(json.dumps(results["many"], indent=2))
        return 0
    if not args.quick:
        replace_text(RESULTS, json.dumps(results, indent=2) + "\n")  # only after a whole run
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
