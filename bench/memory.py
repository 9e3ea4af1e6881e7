"""Memory per idle instance, and how many instances fit in 1 GiB.

Two views:
- Runtime: N idle instances (instantiated, `_start` not called) held in one fresh process
  (bench/idle_instances.py); RSS growth per instance is the slope over N. A probe then adds
  instances until wasmtime refuses one, to show what bounds one process.
- Agent: the `wasmlet-agent run` process with M command-mode instances of the `long` guest
  (sleeps 100 ms between log lines), one agent process per M; RSS once all M are Running.
  Each agent instance also has a Python thread, status and a log ring (LogBuffer, 1000 lines),
  which fills with the guest's output over time; its size at capacity is reported apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import REPO, Context, Json, fmt_bytes, md_table, rss_bytes, running, wait_http
from wasmlet_dev.ports import free_port
from wasmlet_dev.waits import wait_until

TITLE = "Memory per idle instance and instances per GiB"
GIB = 1 << 30
RUNTIME_GUESTS = ("nowasi", "hello")
REPLICAS_MAX = 1000  # spec.replicas maximum: larger M is split over several apps

APP = """\
---
apiVersion: wasmlet.dev/v1alpha1
kind: WasmApp
metadata:
  name: long-{i}
spec:
  replicas: {replicas}
  mode: command
  module:
    oci:
      reference: "{reference}"
      insecure: true
  limits:
    memory: 16Mi
  restartPolicy: Always
"""


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of y over x."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def _runtime(ctx: Context) -> list[Json]:
    checkpoints = [500, 1000] if ctx.quick else [1000, 2000, 5000, 10000]
    rows = []
    for guest in RUNTIME_GUESTS:
        cmd = [
            sys.executable,
            "-m",
            "bench.idle_instances",
            str(ctx.guests()[guest]),
            "--checkpoints",
            ",".join(map(str, checkpoints)),
            "--probe-limit",
            "0" if ctx.quick else "40000",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True, cwd=REPO)
        data: Json = json.loads(out.stdout)
        xs = [0.0] + [float(p["instances"]) for p in data["points"]]
        ys = [float(data["base"]["rss"])] + [float(p["rss"]) for p in data["points"]]
        maps = [float(data["base"]["maps"])] + [float(p["maps"]) for p in data["points"]]
        per = _slope(xs, ys)
        rows.append(
            {
                "guest": guest,
                "per_instance_bytes": per,
                "per_gib": GIB / per,
                "maps_per_instance": _slope(xs, maps),
                "vmsize_per_instance": (data["points"][-1]["vmsize"] - data["base"]["vmsize"])
                / checkpoints[-1],
                "instantiate_seconds": data["points"][-1]["seconds_per_instance"],
                "checkpoints": checkpoints,
                "probe": data["probe"],
                "log_ring_bytes": data["log_ring_bytes"],
                "raw": data,
            }
        )
    return rows


def _running_instances(api: str) -> int:
    with urllib.request.urlopen(f"{api}/apps", timeout=10) as r:
        apps = json.loads(r.read())
    return sum(1 for a in apps for i in a["instances"] if i["state"] == "Running")


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _agent_point(ctx: Context, reference: str, m: int) -> Json:
    work = ctx.dir(f"memory-agent-{m}")
    manifest = work / "long.yaml"
    apps = max(1, -(-m // REPLICAS_MAX))
    manifest.write_text(
        "".join(
            APP.format(i=i, replicas=min(REPLICAS_MAX, m - i * REPLICAS_MAX), reference=reference)
            for i in range(apps)
        )
    )
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    agent = Path(sys.executable).parent / "wasmlet-agent"
    cmd = [
        str(agent),
        "run",
        "--api-port",
        str(api_port),
        "--cache-dir",
        str(ctx.workdir / "agent-cache"),
        str(manifest),
    ]
    # The agent echoes every log line to stdout; a file keeps that off the terminal.
    with running(cmd, work / "agent.log", cwd=REPO) as proc:
        t0 = time.monotonic()
        wait_http(f"{api}/healthz", 60, proc)

        def all_running() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the agent exited; see {work}/agent.log")
            return _running_instances(api) >= m

        wait_until(all_running, f"{m} instances Running (log: {work}/agent.log)", timeout=180,
                   interval=0.25, retry_on=(OSError,))  # fmt: skip
        ready = time.monotonic() - t0
        time.sleep(2.0)  # let start-up garbage settle
        cpu0, c0 = _cpu_ticks(proc.pid), time.monotonic()
        samples = []
        for _ in range(10):
            samples.append(rss_bytes(proc.pid))
            time.sleep(0.2)
        cpu = (_cpu_ticks(proc.pid) - cpu0) / 100 / (time.monotonic() - c0)
        threads = next(
            int(line.split()[1])
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            if line.startswith("Threads:")
        )
        running_now = _running_instances(api)
    return {
        "instances": m,
        "rss": sorted(samples)[len(samples) // 2],
        "threads": threads,
        "ready_seconds": ready,
        "cpu_cores": cpu,
        "running": running_now,
    }


def run(ctx: Context) -> Json:
    runtime = _runtime(ctx)
    reference = ctx.pushed("long").pinned
    # From 1, not 0: the module load (compiled code, linker) is then in the base, not the slope.
    counts = [1, 100] if ctx.quick else [1, 500, 1000, 2000]
    # A first agent pulls and compiles into the shared cache (Cranelift's allocations would
    # inflate its RSS); the measured agents all load the precompiled artifact.
    _agent_point(ctx, reference, 1)
    points = [_agent_point(ctx, reference, m) for m in counts]
    per = _slope([float(p["instances"]) for p in points], [float(p["rss"]) for p in points])
    ring = runtime[-1]["log_ring_bytes"]
    ctx.raw["memory"] = {"runtime": [r.pop("raw") for r in runtime], "agent": points}
    return {
        "runtime": runtime,
        "agent": {
            "points": points,
            "per_instance_bytes": per,
            "per_gib": GIB / per,
            "log_ring_bytes": ring,
            "per_gib_full_logs": GIB / (per + ring),
        },
    }


def render(res: Json) -> str:
    rt = []
    for r in res["runtime"]:
        probe = r["probe"]
        ceiling = (
            f"{probe['instances']:,} ({probe['stopped_by']}; {probe['maps']:,} mappings)"
            if probe
            else "not probed (--quick)"
        )
        rt.append(
            [
                f"`{r['guest']}`",
                f"**{fmt_bytes(r['per_instance_bytes'])}**",
                f"**{r['per_gib']:,.0f}**",
                f"{r['maps_per_instance']:.1f}",
                f"{r['vmsize_per_instance'] / GIB:.1f} GiB",
                f"{r['instantiate_seconds'] * 1e6:.0f} µs",
                ceiling,
                ", ".join(f"{c:,}" for c in r["checkpoints"]),
            ]
        )
    a = res["agent"]
    ag = [
        [
            f"{p['instances']:,}",
            fmt_bytes(p["rss"]),
            p["threads"],
            f"{p['ready_seconds']:.1f} s",
            f"{p['cpu_cores']:.2f}",
        ]
        for p in a["points"]
    ]
    return "\n".join(
        [
            "Runtime only: idle instances (instantiated, not started) in one process; RSS slope "
            "over the instance counts.",
            "",
            md_table(
                [
                    "guest",
                    "RSS per instance",
                    "instances per GiB",
                    "mappings per instance",
                    "address space per instance",
                    "instantiate (mean)",
                    "one-process ceiling (probe)",
                    "instance counts",
                ],
                rt,
            ),
            "",
            "Agent: `wasmlet-agent run` with M command-mode instances of `long` (one agent per M; "
            "RSS median of 10 samples once all M are Running).",
            "",
            md_table(
                ["M", "agent RSS", "threads", "all Running after", "CPU (cores) meanwhile"], ag
            ),
            "",
            f"Agent RSS per instance (slope): **{fmt_bytes(a['per_instance_bytes'])}** → "
            f"**{a['per_gib']:,.0f} instances per GiB**. A log ring at capacity (1000 lines of "
            f"`long`'s output) holds {fmt_bytes(a['log_ring_bytes'])} more per instance → "
            f"{a['per_gib_full_logs']:,.0f} per GiB once every ring is full.",
        ]
    )


def verdict(res: Json) -> list[str]:
    rt = {r["guest"]: r for r in res["runtime"]}["hello"]
    a = res["agent"]
    most = max(p["instances"] for p in a["points"])
    ok = "met" if most >= 2000 and a["per_gib"] >= 2000 else "NOT met"
    probe = rt["probe"]
    ceiling = (
        f"; one process stops at {probe['instances']:,} ({probe['stopped_by']})" if probe else ""
    )
    return [
        f"Density, runtime: {fmt_bytes(rt['per_instance_bytes'])} RSS per idle `hello` instance "
        f"→ {rt['per_gib']:,.0f} per GiB{ceiling}.",
        f"Density, agent: {fmt_bytes(a['per_instance_bytes'])} per command-mode instance → "
        f"{a['per_gib']:,.0f} per GiB ({a['per_gib_full_logs']:,.0f} with full log rings); "
        f"{most:,} ran in one agent — target (thousands of idle instances per agent) {ok}.",
    ]
