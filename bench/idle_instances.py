"""Worker for bench/memory.py: many idle instances in one fresh process, RSS at checkpoints.

`python -m bench.idle_instances GUEST.wasm --checkpoints 1000,5000 [--probe-limit N]`
prints one JSON object. An idle instance is what run_instance builds before it calls
`_start` (Store, WASI, fuel, memory limit, epoch deadline, instance from the InstancePre),
kept alive and never run. The probe then keeps adding instances until wasmtime refuses one,
to find what bounds a single process.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import wasmtime

from wasmlet_agent.runtime import LoadedModule, WasmEngine
from wasmlet_agent.runtime.logs import DEFAULT_MAX_LINES, LogBuffer


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def _idle_instance(engine: WasmEngine, module: LoadedModule) -> tuple[Any, Any]:
    store = wasmtime.Store(engine.engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["bench"]
    store.set_wasi(wasi)
    if engine.config.consume_fuel:
        store.set_fuel((1 << 63) - 1)
    store.set_limits(memory_size=16 << 20)
    store.set_epoch_deadline(1 << 48)
    return store, module.pre.instantiate(store)


def log_ring_bytes(line: bytes = b"tick 1234567\n") -> int:
    """Python heap held by one LogBuffer at capacity with lines like the `long` guest's."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    buf = LogBuffer()
    for _ in range(DEFAULT_MAX_LINES + 10):
        buf.write("stdout", line)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del buf
    return after - before


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("wasm", type=Path)
    p.add_argument("--checkpoints", required=True, help="instance counts, ascending")
    p.add_argument("--probe-limit", type=int, default=0, help="0: no probe")
    p.add_argument("--probe-seconds", type=float, default=60.0)
    args = p.parse_args()
    checkpoints = [int(x) for x in args.checkpoints.split(",")]

    engine = WasmEngine()
    module = LoadedModule.from_file(engine, args.wasm)
    kept = [_idle_instance(engine, module) for _ in range(100)]  # warm the allocators
    gc.collect()
    base = {"rss": _status("VmRSS"), "maps": _maps(), "vmsize": _status("VmSize")}
    points = []
    for target in checkpoints:
        t0 = time.perf_counter()
        added = target - (len(kept) - 100)
        for _ in range(added):
            kept.append(_idle_instance(engine, module))
        elapsed = time.perf_counter() - t0
        gc.collect()
        points.append(
            {
                "instances": target,
                "rss": _status("VmRSS"),
                "maps": _maps(),
                "vmsize": _status("VmSize"),
                "seconds_per_instance": elapsed / max(added, 1),
            }
        )

    probe: dict[str, Any] | None = None
    if args.probe_limit:
        deadline = time.monotonic() + args.probe_seconds
        error = ""
        while len(kept) - 100 < args.probe_limit and time.monotonic() < deadline:
            try:
                kept.append(_idle_instance(engine, module))
            except wasmtime.WasmtimeError as e:
                # The cause is wasmtime's last line, e.g. "Cannot allocate memory (os error 12)".
                lines = [x.strip() for x in str(e).splitlines() if x.strip()]
                error = lines[-1] if lines else type(e).__name__
                break
        count, maps, vmsize = len(kept) - 100, _maps(), _status("VmSize")
        # Free some mappings first: with none left even printing could fail.
        del kept[-1000:]
        probe = {
            "instances": count,
            "stopped_by": error or "limit",
            "maps": maps,
            "vmsize": vmsize,
            "rss": _status("VmRSS"),
        }
    json.dump(
        {"base": base, "points": points, "probe": probe, "log_ring_bytes": log_ring_bytes()},
        sys.stdout,
    )
    sys.stdout.flush()
    engine.stop()


if __name__ == "__main__":
    main()
