"""The on-disk module cache: verification, restart, concurrency (threads and processes), LRU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from tests.agent.sources.helpers import big_wasm_module, wasm_module
from wasmlet_agent.cache import MAC_BYTES, Cache, CacheError
from wasmlet_agent.sources import (
    DigestMismatch,
    InvalidDigest,
    ModuleBytes,
    NotWasm,
    OciClient,
    Reason,
    SourceError,
    Unreachable,
    compute_digest,
)
from wasmlet_dev.oci import push_wasm_artifact
from wasmlet_dev.ports import free_port as closed_port
from wasmlet_dev.registry import RegistryServer

REPO = Path(__file__).resolve().parents[2]


class Fetcher:
    """A fetch callable that counts its calls."""

    def __init__(self, data: bytes, source: str = "test", delay: float = 0.0) -> None:
        self.data, self.source, self.delay = data, source, delay
        self.calls = 0
        self._mu = threading.Lock()

    def __call__(self) -> ModuleBytes:
        with self._mu:
            self.calls += 1
        time.sleep(self.delay)
        return ModuleBytes.of(self.data, self.source)


def never() -> ModuleBytes:
    raise AssertionError("fetch must not be called on a hit")


def never_compile(_: bytes) -> bytes:
    raise AssertionError("compile must not be called on a hit")


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def stored(root: Path) -> list[str]:
    """Files that hold content (locks, empty tmp and the MAC key aside)."""
    return [f for f in files_under(root) if not f.startswith(("locks/", "tmp/")) and f != "key"]


# -- basics ------------------------------------------------------------------------------------


def test_miss_then_hit(tmp_path: Path) -> None:
    module = wasm_module("cache_basic")
    digest = compute_digest(module)
    cache = Cache(tmp_path)
    fetch = Fetcher(module)
    first = cache.get_or_fetch(digest, fetch)
    assert first.fetched and fetch.calls == 1
    assert first.path == tmp_path / "blobs" / "sha256" / digest.split(":")[1]
    assert first.read() == module and first.size == len(module)
    second = cache.get_or_fetch(digest, never)
    assert not second.fetched and second.path == first.path
    assert cache.stats.bytes_on_disk == len(module) and cache.stats.modules == 1
    assert oct(first.path.stat().st_mode & 0o777) == oct(0o600)


def test_hit_after_restart_skips_fetch_and_compile(tmp_path: Path) -> None:
    module = wasm_module("cache_restart")
    digest = compute_digest(module)
    engine = wasmtime.Engine()

    def compile_module(data: bytes) -> bytes:
        return wasmtime.Module(engine, data).serialize()

    first = Cache(tmp_path)
    first.get_or_fetch(digest, Fetcher(module))
    artifact = first.get_or_compile(digest, "wasmtime-50.0.1-x", compile_module)

    restarted = Cache(tmp_path)
    assert restarted.get_or_fetch(digest, never).read() == module
    again = restarted.get_or_compile(digest, "wasmtime-50.0.1-x", never_compile)
    assert again == artifact
    # The artifact is a real precompiled module for this engine.
    loaded = wasmtime.Module.deserialize(engine, again)
    assert [e.name for e in loaded.exports] == ["cache_restart"]
    assert restarted.stats.bytes_on_disk == len(module) + MAC_BYTES + len(artifact)
    assert (tmp_path / "compiled" / digest.split(":")[1] / "wasmtime-50.0.1-x.cwasm").exists()


def test_compile_once_per_fingerprint(tmp_path: Path) -> None:
    module = wasm_module("cache_fp")
    digest = compute_digest(module)
    cache = Cache(tmp_path)
    cache.get_or_fetch(digest, Fetcher(module))
    calls: list[str] = []

    def compile_as(tag: str) -> Callable[[bytes], bytes]:
        def compile_module(data: bytes) -> bytes:
            assert data == module
            calls.append(tag)
            return tag.encode() * 10

        return compile_module

    assert cache.get_or_compile(digest, "engine-a", compile_as("a")) == b"a" * 10
    assert cache.get_or_compile(digest, "engine-b", compile_as("b")) == b"b" * 10
    assert cache.get_or_compile(digest, "engine-a", compile_as("a2")) == b"a" * 10
    assert calls == ["a", "b"]


def test_compile_needs_the_module_and_a_safe_fingerprint(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    with pytest.raises(CacheError, match="get_or_fetch it before compiling"):
        cache.get_or_compile(compute_digest(b"absent"), "fp", never_compile)
    module = wasm_module("cache_fp_bad")
    cache.get_or_fetch(None, Fetcher(module))
    with pytest.raises(CacheError, match="fingerprint"):
        cache.get_or_compile(compute_digest(module), "../../etc", never_compile)


def test_failed_compile_leaves_nothing(tmp_path: Path) -> None:
    module = wasm_module("cache_compile_fail")
    digest = compute_digest(module)
    cache = Cache(tmp_path)
    cache.get_or_fetch(digest, Fetcher(module))

    def broken(_: bytes) -> bytes:
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_compile(digest, "fp", broken)
    assert not list((tmp_path / "compiled").rglob("*.cwasm"))
    assert cache.get_or_compile(digest, "fp", lambda b: b"ok") == b"ok"


def test_corrupted_blob_is_not_compiled(tmp_path: Path) -> None:
    module = wasm_module("cache_rot")
    digest = compute_digest(module)
    cache = Cache(tmp_path)
    path = cache.get_or_fetch(digest, Fetcher(module)).path
    path.write_bytes(module[:-1] + b"\xff")  # bit rot on disk
    with pytest.raises(DigestMismatch):
        cache.get_or_compile(digest, "fp", never_compile)
    assert not path.exists()
    assert cache.get_or_fetch(digest, Fetcher(module)).fetched  # pulled again


def test_unknown_digest_stores_under_computed_digest(tmp_path: Path) -> None:
    module = wasm_module("cache_none")
    cache = Cache(tmp_path)
    fetch = Fetcher(module, source="configmap:ns/cm/key")
    got = cache.get_or_fetch(None, fetch)
    assert got.digest == compute_digest(module) and got.source == "configmap:ns/cm/key"
    # No digest means the source decides each time (tags and ConfigMaps move).
    cache.get_or_fetch(None, fetch)
    assert fetch.calls == 2
    assert stored(tmp_path) == [f"blobs/sha256/{got.digest.split(':')[1]}"]
    assert cache.get_or_fetch(got.digest, never).path == got.path


# -- never cache bad bytes ---------------------------------------------------------------------


def test_digest_mismatch_caches_nothing(tmp_path: Path) -> None:
    module = wasm_module("cache_mismatch")
    wanted = compute_digest(b"the module the spec pinned")
    cache = Cache(tmp_path)
    with pytest.raises(DigestMismatch) as info:
        cache.get_or_fetch(wanted, Fetcher(module))
    assert (info.value.expected, info.value.actual) == (wanted, compute_digest(module))
    assert info.value.reason is Reason.DIGEST_MISMATCH
    assert stored(tmp_path) == [] and files_under(tmp_path / "tmp") == []
    assert not cache.contains(wanted) and not cache.contains(compute_digest(module))


def test_source_lying_about_its_digest_is_caught(tmp_path: Path) -> None:
    module = wasm_module("cache_liar")
    lie = ModuleBytes(module, compute_digest(b"other"), "liar")
    with pytest.raises(DigestMismatch):
        Cache(tmp_path).get_or_fetch(None, lambda: lie)
    assert stored(tmp_path) == []


def test_not_wasm_caches_nothing(tmp_path: Path) -> None:
    page = b"<html>hello</html>"
    cache = Cache(tmp_path)
    with pytest.raises(NotWasm):
        cache.get_or_fetch(compute_digest(page), Fetcher(page))
    with pytest.raises(NotWasm):
        cache.get_or_fetch(None, Fetcher(page))
    assert stored(tmp_path) == []


def test_fetch_error_propagates_and_is_retried(tmp_path: Path) -> None:
    module = wasm_module("cache_retry")
    digest = compute_digest(module)
    cache = Cache(tmp_path)

    def failing() -> ModuleBytes:
        raise Unreachable("registry down")

    with pytest.raises(SourceError) as info:
        cache.get_or_fetch(digest, failing)
    assert info.value.retryable
    assert stored(tmp_path) == []
    assert cache.get_or_fetch(digest, Fetcher(module)).fetched


def test_invalid_digest(tmp_path: Path) -> None:
    with pytest.raises(InvalidDigest):
        Cache(tmp_path).get_or_fetch("sha256:XYZ", never)


def test_partial_tmp_files_are_never_visible(tmp_path: Path) -> None:
    module = big_wasm_module("cache_partial", 8 << 20)
    digest = compute_digest(module)
    cache = Cache(tmp_path)
    # Leftovers of a crashed writer: a truncated copy and garbage, in tmp/.
    (tmp_path / "tmp" / f"{digest.split(':')[1]}.999.dead").write_bytes(module[:100])
    (tmp_path / "tmp" / "junk").write_bytes(b"junk")
    assert not cache.contains(digest)

    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        path = cache.path(digest)
        while not stop.is_set():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            seen.append(len(data))
            assert compute_digest(data) == digest

    t = threading.Thread(target=reader)
    t.start()
    try:
        cache.get_or_fetch(digest, Fetcher(module, delay=0.05))
        time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    assert seen and set(seen) == {len(module)}


def test_stale_tmp_files_are_removed_on_start(tmp_path: Path) -> None:
    Cache(tmp_path)
    old, fresh = tmp_path / "tmp" / "old", tmp_path / "tmp" / "fresh"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    Cache(tmp_path)
    assert not old.exists() and fresh.exists()  # fresh may belong to a live writer


# -- concurrency -------------------------------------------------------------------------------


def test_eight_threads_fetch_once(tmp_path: Path) -> None:
    module = wasm_module("cache_threads")
    digest = compute_digest(module)
    cache = Cache(tmp_path)
    fetch = Fetcher(module, delay=0.2)
    barrier = threading.Barrier(8)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(str(cache.get_or_fetch(digest, fetch).path))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fetch.calls == 1
    assert len(set(results)) == 1 and len(results) == 8
    assert stored(tmp_path) == [f"blobs/sha256/{digest.split(':')[1]}"]
    assert Path(results[0]).read_bytes() == module


def test_eight_threads_compile_once(tmp_path: Path) -> None:
    module = wasm_module("cache_threads_compile")
    digest = compute_digest(module)
    cache = Cache(tmp_path)
    cache.get_or_fetch(digest, Fetcher(module))
    calls: list[int] = []
    barrier = threading.Barrier(8)
    out: list[bytes] = []

    def compile_module(data: bytes) -> bytes:
        calls.append(1)
        time.sleep(0.2)
        return b"artifact"

    def worker() -> None:
        barrier.wait()
        out.append(cache.get_or_compile(digest, "fp", compile_module))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and out == [b"artifact"] * 8


_PROCESS_WORKER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    from wasmlet_agent.cache import Cache
    from wasmlet_agent.sources import ModuleBytes
    root, digest, counter, go, module_path = sys.argv[2:]
    data = open(module_path, "rb").read()

    def fetch():
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        return ModuleBytes.of(data, "process")

    cache = Cache(root)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.002)
    print(cache.get_or_fetch(digest, fetch).fetched, flush=True)
    """
)


def test_two_processes_fetch_once(tmp_path: Path) -> None:
    module = big_wasm_module("cache_procs", 1 << 20)
    digest = compute_digest(module)
    root, counter, go = tmp_path / "cache", tmp_path / "counter", tmp_path / "go"
    source = tmp_path / "module.wasm"
    source.write_bytes(module)
    args = [str(REPO / "node-agent"), str(root), digest, str(counter), str(go), str(source)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_WORKER, *args], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for p in procs:  # both imported and waiting, so they race for the same digest
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(outs) == ["False", "True"]
    assert len(counter.read_text().splitlines()) == 1
    assert stored(root) == [f"blobs/sha256/{digest.split(':')[1]}"]
    assert Cache(root).get_or_fetch(digest, never).read() == module


# -- eviction ----------------------------------------------------------------------------------


def _put(cache: Cache, label: str, size: int) -> str:
    module = big_wasm_module(label, size)
    return cache.get_or_fetch(None, Fetcher(module)).digest


def test_lru_eviction(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=250_000)
    a, b = _put(cache, "lru_a", 100_000), _put(cache, "lru_b", 100_000)
    cache.get_or_fetch(a, never)  # a is now more recent than b
    c = _put(cache, "lru_c", 100_000)
    assert cache.contains(a) and cache.contains(c) and not cache.contains(b)
    assert cache.stats.evictions == 1
    assert cache.stats.bytes_on_disk <= 250_000 and cache.stats.modules == 2
    # A restarted cache keeps the order (it lives in the files' mtimes).
    restarted = Cache(tmp_path, max_bytes=250_000)
    _put(restarted, "lru_d", 100_000)
    assert restarted.contains(c) and not restarted.contains(a)


def test_eviction_counts_and_removes_compiled_artifacts(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=300_000 + MAC_BYTES)  # each artifact carries its MAC
    a = _put(cache, "evict_compiled_a", 100_000)
    cache.get_or_compile(a, "fp", lambda data: b"\0" * 100_000)
    b = _put(cache, "evict_compiled_b", 100_000)
    assert cache.contains(a) and cache.stats.bytes_on_disk == 300_000 + MAC_BYTES
    cache.get_or_compile(b, "fp", lambda data: b"\1" * 50_000)  # over: a goes, with its artifact
    assert not cache.contains(a) and not (tmp_path / "compiled" / a.split(":")[1]).exists()
    assert cache.stats.bytes_on_disk == 150_000 + MAC_BYTES
    # An evicted module can be fetched again (its lock files were recreated).
    assert cache.get_or_fetch(a, Fetcher(big_wasm_module("evict_compiled_a", 100_000))).fetched


def test_pinned_modules_are_never_evicted(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=250_000)
    a = _put(cache, "pin_a", 100_000)
    with cache.pinned(a):
        b = _put(cache, "pin_b", 100_000)
        c = _put(cache, "pin_c", 100_000)  # a is LRU but pinned: b goes
        assert cache.contains(a) and not cache.contains(b) and cache.contains(c)
        assert cache.is_pinned(a)
    assert not cache.is_pinned(a)
    _put(cache, "pin_d", 100_000)  # unpinned, a is LRU again
    assert not cache.contains(a)


def test_pins_nest_and_get_or_fetch_can_pin(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=150_000)
    module = big_wasm_module("pin_fetch", 100_000)
    a = cache.get_or_fetch(None, Fetcher(module), pin=True).digest
    cache.pin(a)
    cache.unpin(a)
    _put(cache, "pin_other", 100_000)  # still pinned once: over the limit, a stays
    assert cache.contains(a)
    cache.unpin(a)
    with pytest.raises(CacheError):
        cache.unpin(a)


def test_everything_pinned_exceeds_the_limit_rather_than_evicting(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=100_000)
    a = _put(cache, "all_pinned_a", 100_000)
    cache.pin(a)
    b = _put(cache, "all_pinned_b", 100_000)
    assert cache.contains(a) and cache.contains(b)
    assert cache.stats.bytes_on_disk > cache.max_bytes  # type: ignore[operator]


_PIN_HOLDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from wasmlet_agent.cache import Cache
    cache = Cache(sys.argv[2])
    cache.pin(sys.argv[3])
    print("pinned", flush=True)
    sys.stdin.readline()
    """
)


def test_pin_held_by_another_process_blocks_eviction(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=150_000)
    a = _put(cache, "xproc_a", 100_000)
    holder = subprocess.Popen(
        [sys.executable, "-c", _PIN_HOLDER, str(REPO / "node-agent"), str(tmp_path), a],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "pinned"
        _put(cache, "xproc_b", 100_000)
        assert cache.contains(a)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    _put(cache, "xproc_c", 100_000)
    assert not cache.contains(a)


# -- with a real registry ----------------------------------------------------------------------


def test_registry_pull_through_cache(registry: RegistryServer, tmp_path: Path) -> None:
    module = wasm_module("cache_registry")
    pushed = push_wasm_artifact(registry, "cache/pull", "v1", module)
    client = OciClient(insecure=True)
    cache = Cache(tmp_path)
    resolved = client.resolve(pushed.reference)
    got = cache.get_or_fetch(resolved.module_digest, lambda: client.fetch(resolved))
    assert got.fetched and got.read() == module

    # A digest-pinned reference hits after a restart without any network: the manifest
    # digest -> module digest alias is immutable. The fetch would fail (closed port).
    restarted = Cache(tmp_path)
    module_digest = restarted.lookup_alias(pushed.digest)
    assert module_digest == compute_digest(module)
    gone = OciClient(insecure=True)
    dead_ref = f"127.0.0.1:{closed_port()}/cache/pull@{pushed.digest}"
    hit = restarted.get_or_fetch(module_digest, lambda: gone.pull(dead_ref))
    assert not hit.fetched and hit.read() == module


def test_registry_wrong_digest_caches_nothing(registry: RegistryServer, tmp_path: Path) -> None:
    module = wasm_module("cache_registry_wrong")
    pushed = push_wasm_artifact(registry, "cache/wrong", "v1", module)
    client = OciClient(insecure=True)
    wrong = compute_digest(b"pinned by the spec")
    cache = Cache(tmp_path)
    with pytest.raises(DigestMismatch):
        cache.get_or_fetch(wrong, lambda: client.pull(pushed.reference))
    assert stored(tmp_path) == []
    assert cache.lookup_alias(pushed.digest) is None


def test_unreachable_registry_through_cache(tmp_path: Path) -> None:
    client = OciClient(insecure=True, timeout=5)
    ref = f"127.0.0.1:{closed_port()}/cache/x:v1"
    with pytest.raises(Unreachable) as info:
        Cache(tmp_path).get_or_fetch(None, lambda: client.pull(ref))
    assert info.value.retryable and info.value.reason is Reason.SOURCE_UNREACHABLE
    assert stored(tmp_path) == []


def test_tampered_artifact_is_recompiled_never_returned(tmp_path: Path) -> None:
    """A guest with a writable view of the cache rewrites an artifact: after a restart the
    agent refuses it (MAC under its node-local key), recompiles and the module still runs."""
    module = wasm_module("cache_tamper")
    digest = compute_digest(module)
    engine = wasmtime.Engine()
    compiles: list[bytes] = []

    def compile_module(data: bytes) -> bytes:
        compiles.append(data)
        return wasmtime.Module(engine, data).serialize()

    first = Cache(tmp_path)
    first.get_or_fetch(digest, Fetcher(module))
    good = first.get_or_compile(digest, "fp", compile_module)
    key = tmp_path / "key"
    assert oct(key.stat().st_mode & 0o777) == oct(0o600) and len(key.read_bytes()) == 32
    artifact = tmp_path / "compiled" / digest.split(":")[1] / "fp.cwasm"
    evil = b"\x7fELF native code of the attacker's choosing"
    on_disk = artifact.read_bytes()
    artifact.write_bytes(on_disk[:MAC_BYTES] + evil)  # an old MAC does not cover new bytes

    restarted = Cache(tmp_path)
    again = restarted.get_or_compile(digest, "fp", compile_module)
    assert evil not in again and compiles == [module, module]
    assert restarted.stats.tampered_artifacts == 1
    assert evil not in artifact.read_bytes()  # rewritten with the agent's own artifact
    loaded = wasmtime.Module.deserialize(engine, again)
    assert [e.name for e in loaded.exports] == ["cache_tamper"]
    assert len(again) == len(good)
    # A foreign key (another node's cache copied in) is refused the same way.
    key.write_bytes(b"k" * 32)
    assert Cache(tmp_path).get_or_compile(digest, "fp", compile_module) and len(compiles) == 3


def test_a_damaged_key_is_named(tmp_path: Path) -> None:
    Cache(tmp_path)
    (tmp_path / "key").write_bytes(b"short")
    with pytest.raises(CacheError, match="not a 32-byte key; delete it"):
        Cache(tmp_path)
