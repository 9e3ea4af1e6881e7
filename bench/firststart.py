"""First start (pull + compile) and second start after an agent restart (cache hit).

Modules are pushed as Wasm OCI artifacts to Debian's docker-registry on loopback, then
loaded through the agent's ModuleStore exactly as an instance start does. Each "first
start" is a fresh agent (new engine, ModuleStore and an empty cache directory); each
"restart" is a new engine and ModuleStore on the cache directory the first start filled,
so the module bytes and the precompiled artifact are on disk but nothing is in memory.
Phases are read from the agent's own cold-start histogram (pull, compile, load) and
InstanceResult (instantiate = Store + WASI + instantiate; `_start` = the guest's main).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench.common import Context, Json, fmt_seconds, md_table, summarize
from wasmlet.api.spec import ModuleSpec, OciSource
from wasmlet_agent.cache import Cache
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.modulestore import ModuleStore
from wasmlet_agent.objects import ManifestObjects
from wasmlet_agent.runtime import InstanceSpec, WasmEngine, run_instance

TITLE = "First start (pull + compile) and second start after an agent restart"
GUESTS = {"hello": "small, C", "gohello": "large, Go"}
PHASES = ("pull", "compile", "load", "instantiate", "start", "other", "total")


def _start_once(cache_dir: Path, spec: ModuleSpec, app: str) -> Json:
    """One agent start of one instance; seconds per phase (0 for phases that did not run)."""
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    engine = WasmEngine()
    try:
        store = ModuleStore(Cache(cache_dir, max_bytes=None), engine, ManifestObjects([]), metrics)
        t0 = time.perf_counter()
        ready = store.load("bench", app, spec, lambda _phase: None)
        result = run_instance(ready.module, InstanceSpec())
        total = time.perf_counter() - t0
    finally:
        engine.stop()
    if not result.succeeded:
        raise RuntimeError(f"{app}: {result.outcome} {result.message}")

    def phase(name: str) -> float:
        labels = {"namespace": "bench", "app": app, "phase": name}
        return registry.get_sample_value("wasmlet_cold_start_seconds_sum", labels) or 0.0

    out: Json = {
        "pull": phase("pull"),
        "compile": phase("compile"),
        "load": phase("load"),
        "instantiate": result.instantiate_seconds,
        "start": result.run_seconds,
        "total": total,
        "pulled": ready.pulled,
        "compiled": ready.compiled,
    }
    # Time inside ModuleStore.load that no phase of the histogram accounts for.
    out["other"] = total - sum(out[p] for p in PHASES[:-2])
    return out


def _series(n: int, once: Callable[[int], Json]) -> Json:
    runs = [once(i) for i in range(n)]
    out: Json = {p: summarize([r[p] for r in runs]) for p in PHASES}
    out["pulled"] = sum(r["pulled"] for r in runs)
    out["compiled"] = sum(r["compiled"] for r in runs)
    out["runs"] = runs
    return out


def _guest_rows(ctx: Context, guest: str, n_first: int, n_second: int) -> list[Json]:
    pushed = ctx.pushed(guest)
    pinned = ModuleSpec(oci=OciSource(reference=pushed.pinned, insecure=True))
    tagged = ModuleSpec(oci=OciSource(reference=pushed.reference, insecure=True))
    dirs = [ctx.dir(f"firststart/{guest}-{i}") for i in range(n_first)]
    first = _series(n_first, lambda i: _start_once(dirs[i], pinned, f"{guest}-first-{i}"))
    # Restarts take the cache directories the first starts filled, in turn.
    series = {
        "first start (empty cache)": first,
        "restart, pinned `@sha256:` reference": _series(
            n_second, lambda i: _start_once(dirs[i % n_first], pinned, f"{guest}-restart-{i}")
        ),
        "restart, tag reference": _series(
            n_second, lambda i: _start_once(dirs[i % n_first], tagged, f"{guest}-tag-{i}")
        ),
    }
    size = ctx.guests()[guest].stat().st_size
    return [
        {"guest": guest, "size": GUESTS[guest], "bytes": size, "what": what, **s}
        for what, s in series.items()
    ]


def run(ctx: Context) -> Json:
    reps = (
        {"hello": (2, 3), "gohello": (1, 3)}
        if ctx.quick
        else {"hello": (10, 20), "gohello": (5, 20)}
    )
    rows = [row for guest, (n1, n2) in reps.items() for row in _guest_rows(ctx, guest, n1, n2)]
    ctx.raw["firststart"] = {f"{r['guest']}/{r['what']}": r.pop("runs") for r in rows}
    return {"rows": rows, "registry": "docker-registry (Distribution) on 127.0.0.1, plain HTTP"}


def render(res: Json) -> str:
    table = []
    for r in res["rows"]:
        n = r["total"]["n"]
        cells = [
            f"`{r['guest']}` ({r['size']}, {r['bytes'] / 1024:.0f} KiB)",
            r["what"],
            n,
            f"{r['pulled']}/{n}",
            f"{r['compiled']}/{n}",
        ]
        cells += [fmt_seconds(r[p]["p50"]) if r[p]["max"] > 0 else "-" for p in PHASES[:-1]]
        t = r["total"]
        cells += [
            f"**{fmt_seconds(t['p50'])}**",
            f"{fmt_seconds(t['min'])} - {fmt_seconds(t['max'])}",
        ]
        table.append(cells)
    headers = [
        "module",
        "start",
        "n",
        "pulled",
        "compiled",
        "pull p50",
        "compile p50",
        "load p50",
        "instantiate p50",
        "`_start` p50",
        "other p50",
        "total p50",
        "total min - max",
    ]
    return (
        md_table(headers, table)
        + "\n\nPhases as the agent's `wasmlet_cold_start_seconds` histogram records them: "
        "pull = registry round trips + digest check + cache write; compile = Cranelift, "
        "artifact written to the cache; load = deserialize the artifact + link WASI + "
        "InstancePre. A restart with a pinned reference touches no network (the manifest "
        "digest's alias maps to the cached module); with a bare tag, `pulled` shows whether "
        "the module was downloaded again. other = wall time of `ModuleStore.load` + "
        "`run_instance` outside those phases (see the notes above for what it is). "
        f"Registry: {res['registry']}."
    )


def verdict(res: Json) -> list[str]:
    out = []
    for guest in GUESTS:
        rows = {r["what"]: r for r in res["rows"] if r["guest"] == guest}
        first = rows["first start (empty cache)"]["total"]["p50"]
        second = rows["restart, pinned `@sha256:` reference"]["total"]["p50"]
        out.append(
            f"First start `{guest}` (pull + compile + instantiate): p50 {fmt_seconds(first)}; "
            f"after an agent restart (cache hit): p50 {fmt_seconds(second)} "
            f"({first / second:.0f}x less)."
        )
    return out
