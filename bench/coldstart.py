"""Instance cold start from a cached precompiled module: in the agent vs `wasmtime run`.

Agent side, in this process with the agent's own runtime (one WasmEngine with its epoch
ticker, LoadedModule, run_instance with a Cancel token as command mode passes one):

- "module in memory": what every start after the first costs, since ModuleStore keeps each
  LoadedModule by digest: Store + WASI + instantiate from the InstancePre + `_start`.
- "precompiled artifact from disk": what a restarted agent pays once per module on top: read
  the artifact, deserialize, link against WASI, build the InstancePre (ModuleStore's hit path).

Baseline: the `wasmtime run` process of the same module, timed by hyperfine without a shell;
after the warm-up its compiled-module cache is warm, so it too starts from precompiled code.
`wasmtime run --allow-precompiled X.cwasm` is the same with an artifact from `wasmtime compile`.
"""

from __future__ import annotations

import gc
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Context, Json, fmt_seconds, md_table, summarize
from wasmlet_agent.runtime import Cancel, InstanceSpec, LoadedModule, WasmEngine, run_instance
from wasmlet_agent.runtime.logs import LogBuffer

TITLE = "Instance cold start from a cached precompiled module"
GUESTS = ("nowasi", "hello")
WARMUP = 50

# Fallback baseline when no wasmtime CLI can be had: a fresh Python process running the module
# through wasmtime-py (so it also pays interpreter start-up, unlike the CLI).
_PY_RUNNER = (
    "import sys, wasmtime\n"
    "e = wasmtime.Engine(); l = wasmtime.Linker(e); l.define_wasi()\n"
    "s = wasmtime.Store(e); w = wasmtime.WasiConfig(); w.inherit_stdout(); s.set_wasi(w)\n"
    "m = wasmtime.Module.from_file(e, sys.argv[1])\n"
    "l.instantiate(s, m).exports(s)['_start'](s)\n"
)


def _spec(logs: bool) -> InstanceSpec:
    if not logs:
        return InstanceSpec()
    # Command mode sends stdout/stderr to a LogBuffer through wasmtime's output callbacks.
    buf = LogBuffer()
    return InstanceSpec(stdout=buf.sink("stdout"), stderr=buf.sink("stderr"))


def _agent_series(
    engine: WasmEngine, wasm: Path, artifact: Path, from_disk: bool, logs: bool, n: int
) -> tuple[list[float], list[float], list[float]]:
    """(total, instantiate, _start) seconds per instance over n runs after a warm-up."""
    resident = LoadedModule.from_serialized(engine, artifact.read_bytes(), name=wasm.stem)
    totals, inst, start = [], [], []
    gc.collect()
    for i in range(WARMUP + n):
        spec = _spec(logs)
        t0 = time.perf_counter()
        module = (
            LoadedModule.from_serialized(engine, artifact.read_bytes(), name=wasm.stem)
            if from_disk
            else resident
        )
        result = run_instance(module, spec, Cancel())
        t1 = time.perf_counter()
        if not result.succeeded:
            raise RuntimeError(f"{wasm.stem}: {result.outcome} {result.message}")
        if i >= WARMUP:
            totals.append(t1 - t0)
            inst.append(result.instantiate_seconds)
            start.append(result.run_seconds)
    return totals, inst, start


def _hyperfine(commands: list[list[str]], runs: int, out: Path) -> list[list[float]]:
    """Per-run wall times (s) of each command, run without a shell, output discarded."""
    cmd = [
        "hyperfine",
        "-N",
        "--style",
        "none",
        "--warmup",
        "20",
        "--runs",
        str(runs),
        "--export-json",
        str(out),
        *(shlex.join(c) for c in commands),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=900)
    data = json.loads(out.read_text())
    series = []
    for res in data["results"]:
        if any(code != 0 for code in res.get("exit_codes") or []):
            raise RuntimeError(f"{res['command']} exited non-zero")
        series.append([float(t) for t in res["times"]])
    return series


def run(ctx: Context) -> Json:
    n_agent = 200 if ctx.quick else 2000
    n_cli = 100 if ctx.quick else 1000
    guests = ctx.guests()
    work = ctx.dir("coldstart")
    engine = WasmEngine()
    rows: list[Json] = []
    raw: Json = {}
    try:
        for guest in GUESTS:
            wasm = guests[guest]
            artifact = work / f"{guest}.agent.cwasm"
            artifact.write_bytes(LoadedModule.from_file(engine, wasm).serialize())
            variants = [
                ("module in memory", False, True),
                ("precompiled artifact from disk", True, True),
            ]
            if guest == "hello":
                variants.append(("module in memory, stdout discarded", False, False))
            for what, from_disk, logs in variants:
                total, inst, start = _agent_series(engine, wasm, artifact, from_disk, logs, n_agent)
                key = f"agent/{guest}/{what}"
                raw[key] = total
                rows.append(
                    {
                        "side": "agent",
                        "guest": guest,
                        "what": what,
                        "seconds": summarize(total),
                        "instantiate": summarize(inst),
                        "start": summarize(start),
                    }
                )
    finally:
        engine.stop()

    cli = ctx.wasmtime_cli()
    baseline: Json = {"cli": cli.version, "available": cli.available}
    for guest in GUESTS:
        wasm = guests[guest]
        if cli.available:
            assert cli.path is not None
            cwasm = work / f"{guest}.cli.cwasm"
            subprocess.run(
                [str(cli.path), "compile", str(wasm), "-o", str(cwasm)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            commands = {
                "wasmtime run": [str(cli.path), "run", str(wasm)],
                "wasmtime run --allow-precompiled": [
                    str(cli.path),
                    "run",
                    "--allow-precompiled",
                    str(cwasm),
                ],
            }
            runs = n_cli
        else:
            commands = {
                "python -c (wasmtime-py, fresh process)": [
                    sys.executable,
                    "-c",
                    _PY_RUNNER,
                    str(wasm),
                ]
            }
            runs = min(n_cli, 200)  # ~100 ms each
        series = _hyperfine(list(commands.values()), runs, work / f"hyperfine-{guest}.json")
        for (what, _), times in zip(commands.items(), series, strict=True):
            raw[f"baseline/{guest}/{what}"] = times
            rows.append(
                {"side": "baseline", "guest": guest, "what": what, "seconds": summarize(times)}
            )
    ctx.raw["coldstart"] = raw
    return {"rows": rows, "baseline": baseline, "n_agent": n_agent, "n_cli": n_cli}


def render(res: Json) -> str:
    rows = res["rows"]
    base: dict[str, float] = {}
    for r in rows:  # the first baseline row of each guest is the one to beat
        if r["side"] == "baseline":
            base.setdefault(r["guest"], r["seconds"]["p50"])
    first_baseline = next(r["what"] for r in rows if r["side"] == "baseline")
    table = []
    for r in rows:
        s = r["seconds"]
        side = "**agent**" if r["side"] == "agent" else "baseline"
        ratio = base[r["guest"]] / s["p50"] if r["side"] == "agent" else None
        table.append(
            [
                side,
                f"`{r['guest']}`",
                r["what"],
                fmt_seconds(s["p50"]),
                fmt_seconds(s["p99"]),
                f"{fmt_seconds(s['p25'])} - {fmt_seconds(s['p75'])}",
                f"{fmt_seconds(s['min'])} - {fmt_seconds(s['max'])}",
                s["n"],
                f"{ratio:.0f}x faster" if ratio else "",
            ]
        )
    out = [
        md_table(
            [
                "side",
                "guest",
                "what",
                "p50",
                "p99",
                "IQR (p25-p75)",
                "min - max",
                "n",
                f"p50 vs `{first_baseline}`",
            ],
            table,
        )
    ]
    parts = [
        f"`{r['guest']}` {r['what']}: Store+WASI+instantiate "
        f"{fmt_seconds(r['instantiate']['p50'])}, `_start` {fmt_seconds(r['start']['p50'])}"
        for r in rows
        if r["side"] == "agent" and "from disk" not in r["what"]
    ]
    out.append("\nWhere the time goes (p50): " + "; ".join(parts) + ".")
    out.append(f"\nBaseline CLI: {res['baseline']['cli']}.")
    return "\n".join(out)


def verdict(res: Json) -> list[str]:
    rows = res["rows"]
    out = []
    for guest in GUESTS:
        agent = next(r for r in rows if r["guest"] == guest and r["what"] == "module in memory")[
            "seconds"
        ]["p50"]
        cli = next(r for r in rows if r["guest"] == guest and r["side"] == "baseline")
        ok = "met" if agent < 1e-3 else "NOT met"
        out.append(
            f"Cold start `{guest}`: p50 {fmt_seconds(agent)} in the agent vs "
            f"{fmt_seconds(cli['seconds']['p50'])} for `{cli['what']}` — target "
            f"(p50 well under 1 ms) {ok}."
        )
    return out
