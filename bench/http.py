"""HTTP requests/s with an instance per request: the agent serving the C `cgi` guest.

The agent is the real `wasmlet-agent run` process on a manifest whose module is pulled from
the loopback registry. Baselines, in the same run and with the same pinning: aiohttp set up
like the agent's HttpFront answering the same bytes with no Wasm (the framework's ceiling),
and the same plus the worker-thread round trip the agent makes for every instance; and
`wasmtime serve`, the wasmtime CLI's own wasi:http server (Rust, an instance per request),
running a C component built in the run that answers the same bytes (bench/wasi_http.py): the
gap to the best native Wasm server.

Load: wrk, one thread, CONNECTIONS keep-alive connections, on loopback. "1 core": the server
under `taskset -c 0`, wrk on core 1. "2 cores": the server under `taskset -c 0,1` and wrk on
the same two cores (the machine has no third), so wrk takes some of the server's CPU.
Unloaded latency: one connection, server on core 0, wrk on core 1.

The agent serves with one HTTP serving process per core of its layout (`--http-processes`;
1 = in the agent's own process), and on 2 cores also in-process as before, for comparison.
Beside req/s: requests per CPU-second of the server (the agent and its serving processes),
the fair measure while wrk shares the cores, and wrk's own CPU-seconds.
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.baseline_server import BODY
from bench.common import (
    BENCH_DIR,
    REPO,
    Context,
    Json,
    OthersMeter,
    fmt_seconds,
    md_table,
    process_cpu_seconds,
    running,
    summarize,
    wait_http,
    wait_quiet,
)
from bench.wasi_http import build_http_echo, serve_cmd
from wasmlet_agent.runtime import InstanceSpec, LoadedModule, WasmEngine
from wasmlet_agent.runtime.cgi import CgiRequest, invoke_cgi
from wasmlet_agent.runtime.logs import LogBuffer
from wasmlet_dev.ports import free_port

TITLE = "HTTP requests/s with an instance per request"
ATTEMPTS = 3  # per wrk run, while other processes disturb it
MAX_OTHERS = 0.05  # share of the CPUs others may take during a kept run
# The target's load point (p99 under 5 ms at 8 connections): enough to keep every serving
# process busy on 2 cores, few enough that latency is the instance's, not a queue's.
CONNECTIONS = 8
LAYOUTS = {"1 core": ("0", "1"), "2 cores": ("0,1", "0,1")}  # server cpus, wrk cpus
SERVERS = {
    "agent": "**agent** (`wasmlet-agent run`, `cgi` guest, a serving process per core)",
    "agent-inproc": "agent serving in its own process (`--http-processes 1`)",
    "aiohttp": "baseline: aiohttp, no Wasm",
    "aiohttp+hop": "baseline: aiohttp + worker-thread hop, no Wasm",
    "wasmtime-serve": "baseline: `wasmtime serve`, the same answer from a wasi:http C component",
}
PATH = "/bench"

MANIFEST = """\
apiVersion: wasmlet.dev/v1alpha1
kind: WasmApp
metadata:
  name: cgi
spec:
  replicas: 1
  mode: http
  http:
    port: {port}
  module:
    oci:
      reference: "{reference}"
      insecure: true
  limits:
    memory: 16Mi
    requestTimeoutSeconds: 10
    maxConcurrency: 256
"""


def _wrk(cpus: str, url: str, seconds: float, connections: int) -> Json:
    cmd = [
        "taskset",
        "-c",
        cpus,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH_DIR / "wrk_report.lua"),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    _, _, tail = out.stdout.partition("WRK_JSON ")
    if not tail:
        raise RuntimeError(f"wrk printed no summary: {out.stdout}{out.stderr}")
    data: Json = json.loads(tail.splitlines()[0])
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["error_count"] = sum(data["errors"].values())
    data["wrk_cpu_s"] = wrk_cpu
    return data


def _tree(pid: int) -> list[int]:
    """`pid` and its live descendants (the agent's serving processes)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out += _tree(int(child))
    return out


def _tree_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            total += process_cpu_seconds(pid)
    return total


def _quiet_wrk(
    cpus: str, url: str, seconds: float, connections: int, server: int, attempts: int
) -> Json:
    """A wrk run that other processes did not disturb, if one can be had in `attempts` tries.

    The machine may be shared: a run during which others took more than MAX_OTHERS of the
    CPUs is repeated, and the least disturbed run is kept (its share is recorded).
    """
    best: Json | None = None
    for _ in range(attempts):
        if attempts > 1:
            wait_quiet(30)
        pids = _tree(server)
        meter = OthersMeter(pids)
        cpu0 = _tree_cpu(pids)
        data = _wrk(cpus, url, seconds, connections)
        data["server_cpu_s"] = _tree_cpu(pids) - cpu0
        data["rps_per_server_cpu_s"] = data["requests"] / max(data["server_cpu_s"], 1e-9)
        data["others"] = meter.share()
        if best is None or data["others"] < best["others"]:
            best = data
        if data["others"] <= MAX_OTHERS:
            break
    assert best is not None
    return best


def _server_cmd(
    ctx: Context, server: str, port: int, manifest: Path, cache_dir: Path, cores: int
) -> list[str]:
    if server == "wasmtime-serve":
        cli = ctx.wasmtime_cli()
        if cli.path is None:
            raise RuntimeError(f"the wasmtime CLI is needed for its baseline: {cli.version}")
        return serve_cmd(cli.path, build_http_echo(ctx.dir("wasi-http")), port)
    if server.startswith("agent"):
        agent = Path(sys.executable).parent / "wasmlet-agent"
        processes = cores if server == "agent" else 1
        return [str(agent), "run", "--cache-dir", str(cache_dir),
                "--http-processes", str(processes), str(manifest)]  # fmt: skip
    hop = ["--thread-hop"] if server == "aiohttp+hop" else []
    return [sys.executable, "-m", "bench.baseline_server", str(port), *hop]


def _instance_cost(ctx: Context, n: int) -> list[Json]:
    """invoke_cgi in this process, no HTTP: what the instance part of a request costs."""
    engine = WasmEngine()
    rows = []
    try:
        module = LoadedModule.from_file(engine, ctx.guests()["cgi"])
        req = CgiRequest("GET", PATH, headers=[("Host", "127.0.0.1"), ("User-Agent", "wrk")])
        # The app's limits as in MANIFEST; the agent adds a LogBuffer sink for stderr.
        specs = {
            "stderr to a LogBuffer (as the agent)": InstanceSpec(
                stderr=LogBuffer().sink("stderr"), memory_limit_bytes=16 << 20, timeout_seconds=10.0
            ),
            "stderr discarded": InstanceSpec(memory_limit_bytes=16 << 20, timeout_seconds=10.0),
        }
        for what, spec in specs.items():
            times = []
            for i in range(n + 50):
                t0 = time.perf_counter()
                resp = invoke_cgi(module, req, spec)
                if i >= 50:
                    times.append(time.perf_counter() - t0)
                if resp.status != 200:
                    raise RuntimeError(f"cgi answered {resp.status}: {resp.error}")
            rows.append({"what": what, "seconds": summarize(times)})
    finally:
        engine.stop()
    return rows


def run(ctx: Context) -> Json:
    reps, seconds, warmup = (1, 2.0, 1.0) if ctx.quick else (3, 5.0, 2.0)
    attempts = 1 if ctx.quick else ATTEMPTS
    pushed = ctx.pushed("cgi")
    work = ctx.dir("http")
    rows: list[Json] = []
    raw: Json = {}
    for layout, (server_cpus, wrk_cpus) in LAYOUTS.items():
        cores = len(server_cpus.split(","))
        for server in SERVERS:
            if server == "agent-inproc" and cores == 1:
                continue  # the same as "agent" on one core
            port = free_port()
            manifest = work / f"cgi-{port}.yaml"
            manifest.write_text(MANIFEST.format(port=port, reference=pushed.pinned))
            cmd = _server_cmd(ctx, server, port, manifest, work / "agent-cache", cores)
            url = f"http://127.0.0.1:{port}{PATH}"
            log = work / f"{server}.log"
            with running(["taskset", "-c", server_cpus, *cmd], log, cwd=REPO) as proc:
                body = wait_http(url, 120, proc)
                if body != BODY:
                    raise RuntimeError(f"{server} answered {body!r}, expected {BODY!r}")
                _wrk(wrk_cpus, url, warmup, CONNECTIONS)
                runs = [
                    _quiet_wrk(wrk_cpus, url, seconds, CONNECTIONS, proc.pid, attempts)
                    for _ in range(reps)
                ]
                unloaded = None
                if layout == "1 core":
                    unloaded = _quiet_wrk(wrk_cpus, url, seconds, 1, proc.pid, attempts)
                if proc.poll() is not None:
                    raise RuntimeError(f"{server} exited during the load; see {log}")
            raw[f"{layout}/{server}"] = {"loaded": runs, "unloaded": unloaded}
            rows.append(
                {
                    "layout": layout,
                    "server": server,
                    "connections": CONNECTIONS,
                    "seconds_per_run": seconds,
                    "runs": reps,
                    "rps": summarize([r["rps"] for r in runs]),
                    "p50_ms": summarize([r["latency_us"]["p50"] / 1e3 for r in runs]),
                    "p99_ms": summarize([r["latency_us"]["p99"] / 1e3 for r in runs]),
                    "errors": sum(r["error_count"] for r in runs),
                    "rps_per_server_cpu_s": summarize([r["rps_per_server_cpu_s"] for r in runs]),
                    "server_cpu_share": summarize(
                        [r["server_cpu_s"] / (r["duration_us"] / 1e6) for r in runs]
                    ),
                    "wrk_cpu_share": summarize(
                        [r["wrk_cpu_s"] / (r["duration_us"] / 1e6) for r in runs]
                    ),
                    "others_max": max(r["others"] for r in runs),
                    "unloaded": None
                    if unloaded is None
                    else {
                        "rps": unloaded["rps"],
                        "p50_ms": unloaded["latency_us"]["p50"] / 1e3,
                        "p99_ms": unloaded["latency_us"]["p99"] / 1e3,
                        "errors": unloaded["error_count"],
                        "others": unloaded["others"],
                    },
                }
            )
    instance = _instance_cost(ctx, 300 if ctx.quick else 2000)
    ctx.raw["http"] = raw
    return {"rows": rows, "instance": instance, "wrk": f"wrk -t1 -c{CONNECTIONS}"}


def others(res: Json) -> float:
    """The worst share of the CPUs other processes took during a kept wrk run.

    Runs guard themselves (see _quiet_wrk), so the suite neither repeats this benchmark nor
    counts its waits for a quiet machine as disturbance.
    """
    shares = [float(r["others_max"]) for r in res["rows"]]
    shares += [float(r["unloaded"]["others"]) for r in res["rows"] if r["unloaded"] is not None]
    return max(shares)


def render(res: Json) -> str:
    rows = res["rows"]
    agent_rps = {r["layout"]: r["rps"]["p50"] for r in rows if r["server"] == "agent"}
    table = []
    for r in rows:
        rps = r["rps"]
        share = (
            "" if r["server"].startswith("agent") else f"{agent_rps[r['layout']] / rps['p50']:.0%}"
        )
        per_cpu = r.get("rps_per_server_cpu_s")
        table.append(
            [
                r["layout"],
                SERVERS[r["server"]],
                f"**{rps['p50']:,.0f}**",
                f"{rps['min']:,.0f} - {rps['max']:,.0f}",
                f"{r['p50_ms']['p50']:.1f} ms",
                f"{r['p99_ms']['p50']:.1f} ms",
                f"{r['runs']} x {r['seconds_per_run']:g} s",
                r["errors"],
                f"{r.get('others_max', 0):.0%}",
                f"{per_cpu['p50']:,.0f}" if per_cpu else "",
                f"{r['server_cpu_share']['p50']:.2f}" if per_cpu else "",
                f"{r['wrk_cpu_share']['p50']:.2f}" if per_cpu else "",
                share,
            ]
        )
    headers = [
        "cores",
        "server",
        "req/s (median)",
        "req/s min - max",
        "latency p50",
        "latency p99",
        "runs",
        "errors",
        "others' CPU (worst run)",
        "req per server CPU-s",
        "server CPUs busy",
        "wrk CPUs busy",
        "agent as % of it",
    ]
    out = [
        f"Loaded: `{res['wrk']}`; latency = median over runs of each run's percentile; "
        "others' CPU = share of the machine other processes took during the run.",
        "",
        md_table(headers, table),
        "",
    ]
    unloaded = [
        [
            SERVERS[r["server"]],
            f"{r['unloaded']['rps']:,.0f}",
            f"{r['unloaded']['p50_ms']:.2f} ms",
            f"{r['unloaded']['p99_ms']:.2f} ms",
        ]
        for r in rows
        if r["unloaded"] is not None
    ]
    out += [
        "Unloaded (one connection, 1 core):",
        "",
        md_table(["server", "req/s", "latency p50", "latency p99"], unloaded),
        "",
    ]
    inst = [
        [
            r["what"],
            fmt_seconds(r["seconds"]["p50"]),
            fmt_seconds(r["seconds"]["p99"]),
            r["seconds"]["n"],
        ]
        for r in res["instance"]
    ]
    out += [
        "The instance part of a request (`invoke_cgi` in process, no HTTP, 1 thread):",
        "",
        md_table(["`cgi` guest", "p50", "p99", "n"], inst),
    ]
    return "\n".join(out)


def verdict(res: Json) -> list[str]:
    """Issue 12's HTTP targets: per agent CPU-second, p99 at 8 connections, 1 vs 2 cores."""
    rows = {(r["layout"], r["server"]): r for r in res["rows"]}
    out = []
    for layout in LAYOUTS:
        r = rows.get((layout, "agent"))
        if r is None:
            continue
        per_cpu, p99 = r["rps_per_server_cpu_s"]["p50"], r["p99_ms"]["p50"]
        ok = "met" if per_cpu >= 3000 and p99 < 5 else "NOT met"
        serve = rows.get((layout, "wasmtime-serve"))
        gap = ""
        if serve is not None:
            theirs = serve["rps_per_server_cpu_s"]["p50"]
            gap = f"; `wasmtime serve` {theirs:,.0f}, the agent {per_cpu / theirs:.0%} of it"
        out.append(
            f"HTTP, {layout}: {per_cpu:,.0f} requests per agent CPU-second "
            f"({r['rps']['p50']:,.0f} req/s), p99 {p99:.1f} ms at {r['connections']} "
            f"connections{gap} — target (3,000 per CPU-second, p99 under 5 ms) {ok}."
        )
    one, two = rows.get(("1 core", "agent")), rows.get(("2 cores", "agent"))
    if one is not None and two is not None:
        a, b = one["rps_per_server_cpu_s"]["p50"], two["rps_per_server_cpu_s"]["p50"]
        ok = "met" if b >= 0.85 * a and two["rps"]["p50"] >= one["rps"]["p50"] else "NOT met"
        out.append(
            f"HTTP, one serving process to two: {b / a - 1:+.0%} per CPU-second, "
            f"{one['rps']['p50']:,.0f} to {two['rps']['p50']:,.0f} req/s — target (within 15%, "
            f"2 cores never below 1) {ok}."
        )
    return out
