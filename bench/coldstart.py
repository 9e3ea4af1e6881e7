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
from enum import StrEnum
from pathlib import Path

from bench.common import Context, Json, fmt_seconds, md_table, summarize
from wasmlet_agent.runtime import (
    Cancel,
    InstanceResult,
    InstanceSpec,
    LoadedModule,
    WasmEngine,
    run_instance,
)
from wasmlet_agent.runtime.logs import LogBuffer
from wasmlet_agent.runtime.outputs import capture_output

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


class Output(StrEnum):
    CAPTURED = "captured"  # command mode: pipes drained into a LogBuffer (runtime/outputs.py)
    CALLBACK = "callback"  # the previous wiring: a Python callback per write (stdout_custom)
    DISCARDED = "discarded"


def _run_once(module: LoadedModule, output: Output, logs: LogBuffer) -> InstanceResult:
    if output is Output.DISCARDED:
        return run_instance(module, InstanceSpec(), Cancel())
    if output is Output.CALLBACK:
        spec = InstanceSpec(stdout=logs.sink("stdout"), stderr=logs.sink("stderr"))
        return run_instance(module, spec, Cancel())
    capture = capture_output(logs.write)  # as CommandInstance does
    try:
        spec = InstanceSpec(stdout_path=capture.stdout_path, stderr_path=capture.stderr_path)
        return run_instance(module, spec, Cancel())
    finally:
        capture.finish()


def _agent_series(
    engine: WasmEngine, wasm: Path, artifact: Path, from_disk: bool, output: Output, n: int
) -> tuple[list[float], list[float], list[float]]:
    """(total, instantiate, _start) seconds per instance over n runs after a warm-up."""
    resident = LoadedModule.from_serialized(engine, artifact.read_bytes(), name=wasm.stem)
    totals, inst, start = [], [], []
    gc.collect()
    for i in range(WARMUP + n):
        logs = LogBuffer()
        t0 = time.perf_counter()
        module = (
            LoadedModule.from_serialized(engine, artifact.read_bytes(), name=wasm.stem)
            if from_disk
            else resident
        )
        result = _run_once(module, output, logs)
        t1 = time.perf_counter()
        if not result.succeeded:
            raise RuntimeError(f"{wasm.stem}: {result.outcome} {result.message}")
        if output is not Output.DISCARDED and wasm.stem == "hello" and not logs.tail():
            raise RuntimeError(f"{wasm.stem}: its output did not reach the log ({output})")
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
                ("module in memory", False, Output.CAPTURED),
                ("precompiled artifact from disk", True, Output.CAPTURED),
            ]
            if guest == "hello":  # the two ends of output wiring, in the same run
                variants.append(("module in memory, stdout discarded", False, Output.DISCARDED))
                variants.append(
                    ("module in memory, a Python callback per write (before)", False,
                     Output.CALLBACK)
                )  # fmt: skip
            for what, from_disk, output in variants:
                total, inst, start = _agent_series(
                    engine, wasm, artifact, from_disk, output, n_agent
                )
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
    hello = {r["what"]: r["seconds"]["p50"] for r in rows if r["guest"] == "hello"}
    discarded = hello.get("module in memory, stdout discarded")
    before = hello.get("module in memory, a Python callback per write (before)")
    if discarded and before:
        attached = hello["module in memory"]
        ok = "met" if attached < 150e-6 else "NOT met"
        out.append(
            f"Cold start `hello` with its output in the log: p50 {fmt_seconds(attached)} "
            f"(discarded {fmt_seconds(discarded)}, a callback per write {fmt_seconds(before)}) "
            f"— target (p50 under 150 µs) {ok}."
        )
    return out
