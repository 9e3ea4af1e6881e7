"""Content-addressed module cache on disk: each module is pulled, verified and compiled once.

Long (~600 lines) on purpose: the on-disk layout, the cross-process locking, the LRU
bound and the artifacts' MACs are one invariant, read together; split, each part would need
the others.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wasmlet_agent.sources.base import ModuleBytes, check_wasm
from wasmlet_agent.sources.digests import (
    DigestMismatch,
    compute_digest,
    hex_of,
    is_digest,
    parse_digest,
)

_FINGERPRINT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX_RE = re.compile(r"^[a-f0-9]{64}$")
# A tmp file older than this was left by a crashed writer.
_STALE_TMP_SECONDS = 3600.0
# Each precompiled artifact starts with an HMAC-SHA256 of (module, fingerprint, artifact).
MAC_BYTES = 32

log = logging.getLogger("wasmlet.agent")


class CacheError(Exception):
    """The cache cannot serve a request (not a source failure)."""


def unwritable_reason(
    directory: Path, what: str = "cache directory", flag: str = "--cache-dir"
) -> str | None:
    """Why this process cannot keep its cache in `directory` (None: it can), in words that
    name the directory, its owner and mode, our uid, and the fix. Checked at start, so a
    root-owned hostPath fails with this instead of a PermissionError traceback later."""
    existing = directory
    found = ""
    while True:  # it will be created under the nearest existing parent
        try:
            st = existing.stat()
        except FileNotFoundError:
            if existing == existing.parent:
                return None
            existing = existing.parent
            continue
        except OSError as e:
            found = f"{existing} cannot be reached: {e.strerror}"
        break
    if not found:
        if not stat.S_ISDIR(st.st_mode):
            found = f"{existing} is not a directory"
        elif os.access(existing, os.W_OK | os.X_OK):
            return None
        else:
            found = f"{existing} is owned by uid {st.st_uid} with mode {st.st_mode & 0o7777:04o}"
    uid = os.geteuid()
    return (
        f"{what} {directory} is not writable by this agent (uid {uid}): {found}. "
        f"Fix: make it writable by uid {uid} (`chown -R {uid} {existing}`; in a cluster the "
        f"wasmlet-agent DaemonSet's init container does this for its hostPath), or pass "
        f"{flag} with a writable directory"
    )


@dataclass(frozen=True)
class CachedModule:
    """A verified module on disk; `fetched` tells whether this call pulled it."""

    digest: str
    path: Path
    size: int
    fetched: bool
    source: str | None = None

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass
class CacheStats:
    """Plain counters for the metrics layer (read them, do not write)."""

    evictions: int = 0
    bytes_on_disk: int = 0
    modules: int = 0
    tampered_artifacts: int = 0  # artifacts whose MAC failed: discarded and recompiled


@dataclass(frozen=True)
class _Entry:
    hex: str
    size: int
    last_used_ns: int


class Cache:
    """Module bytes and precompiled artifacts keyed by sha256; bounded by `max_bytes` (LRU).

    Layout under `root` (the directory is the whole state; a restarted agent finds it as is):

        blobs/sha256/<hex>                  module bytes, verified before being renamed in
        compiled/<hex>/<fingerprint>.cwasm  MAC (32 bytes) + precompiled artifact per engine
                                            fingerprint
        key                                 node-local HMAC key (32 random bytes, 0600)
        aliases/sha256/<hex>                manifest digest -> module digest (both immutable)
        locks/<hex>.fetch, locks/<hex>.pin  flock files: one writer per digest; pins (shared)
        tmp/                                files being written, renamed into place when whole

    Writers take the per-digest fetch lock (threads and processes alike), so one pull of a
    digest runs while the others wait and then hit. A pin is a shared flock held while the
    module is in use; eviction takes locks without waiting and skips whatever it cannot lock,
    so it never removes a module another thread or process has pinned or is compiling. The
    last use of a module is its blob's mtime, so LRU order survives restarts.

    A precompiled artifact is native code that `deserialize` trusts blindly, and guests act
    with the agent's uid through their preopens; so each artifact carries an HMAC-SHA256 under
    `key` (made on first start, readable only by the agent's user) over the module digest, the
    fingerprint and the artifact. One that fails the check is never returned: it is logged,
    counted in `stats.tampered_artifacts` and recompiled from the verified module bytes.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._blobs = self.root / "blobs" / "sha256"
        self._compiled = self.root / "compiled"
        self._aliases = self.root / "aliases" / "sha256"
        self._locks = self.root / "locks"
        self._tmp = self.root / "tmp"
        for d in (self._blobs, self._compiled, self._aliases, self._locks, self._tmp):
            # Modules may come from private registries: keep them to the agent's user.
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._mu = threading.Lock()
        self._stats_mu = threading.Lock()
        self._thread_locks: dict[str, tuple[threading.Lock, int]] = {}
        self._pins: dict[str, tuple[int, int]] = {}  # hex -> (count, fd holding LOCK_SH)
        self._last_ns = 0
        self._key = self._load_or_create_key()
        self._remove_stale_tmp()
        self.refresh_stats()

    # -- modules --------------------------------------------------------------------------

    def get_or_fetch(
        self,
        digest: str | None,
        fetch: Callable[[], ModuleBytes],
        *,
        pin: bool = False,
    ) -> CachedModule:
        """The module with `digest`, calling `fetch` only if it is not on disk yet.

        With a digest, a hit touches no network and concurrent callers (threads or
        processes) fetch once. Without one (a tag or a ConfigMap), `fetch` runs and its
        bytes are stored under their own digest. Fetched bytes are verified (digest and Wasm
        magic) before they are written; nothing unverified is ever visible. `pin=True` pins
        the digest before returning, so eviction cannot race the caller.
        """
        if digest is None:
            return self._fetch_unknown(fetch, pin)
        digest = parse_digest(digest, "module digest")
        h = hex_of(digest)
        if pin:
            self.pin(digest)
        try:
            hit = self._lookup(h)
            if hit is None:
                with self._digest_lock(h):
                    hit = self._lookup(h)
                    if hit is None:
                        module = fetch()
                        return self._insert(module, expected=digest)
            return hit
        except BaseException:
            if pin:
                self.unpin(digest)
            raise

    def _fetch_unknown(self, fetch: Callable[[], ModuleBytes], pin: bool) -> CachedModule:
        module = fetch()
        digest = compute_digest(module.data)
        if pin:
            self.pin(digest)
        try:
            with self._digest_lock(hex_of(digest)):
                return self._insert(module, expected=None)
        except BaseException:
            if pin:
                self.unpin(digest)
            raise

    def contains(self, digest: str) -> bool:
        return self._blob(hex_of(digest)).exists()

    def path(self, digest: str) -> Path:
        """Where the module with `digest` is (or would be) stored."""
        return self._blob(hex_of(digest))

    def lookup_alias(self, manifest_digest: str) -> str | None:
        """The module digest an OCI manifest digest resolved to before, if known.

        A manifest digest names immutable content, so this mapping never goes stale; it
        lets a `repo@sha256:...` reference hit the cache without asking the registry.
        """
        try:
            value = (self._aliases / hex_of(manifest_digest)).read_text().strip()
        except FileNotFoundError:
            return None
        return value if is_digest(value) else None

    # -- compiled artifacts ---------------------------------------------------------------

    def get_or_compile(
        self, digest: str, fingerprint: str, compile: Callable[[bytes], bytes]
    ) -> bytes:
        """The precompiled artifact of module `digest` for an engine `fingerprint`.

        `compile` gets the module bytes and returns the serialized artifact (the runtime's
        Module.serialize); it runs once per (digest, fingerprint) across threads and processes.
        """
        h = hex_of(parse_digest(digest, "module digest"))
        if not _FINGERPRINT_RE.match(fingerprint):
            raise CacheError(
                f"engine fingerprint {fingerprint!r} must be 1-128 of letters, digits, . _ -"
            )
        path = self._compiled / h / f"{fingerprint}.cwasm"
        data = self._read_compiled(h, fingerprint, path)
        if data is not None:
            return data
        with self._digest_lock(h):
            data = self._read_compiled(h, fingerprint, path)
            if data is not None:
                return data
            try:
                module = self._blob(h).read_bytes()
            except FileNotFoundError:
                raise CacheError(
                    f"module {digest} is not in the cache; get_or_fetch it before compiling"
                ) from None
            actual = compute_digest(module)
            if actual != digest:
                # Disk corruption: drop the blob so the next get_or_fetch pulls it again.
                self._blob(h).unlink(missing_ok=True)
                raise DigestMismatch(digest, actual, f"cached module {self._blob(h)}")
            artifact = compile(module)
            path.parent.mkdir(exist_ok=True, mode=0o700)
            self._write_atomic(path, self._mac(h, fingerprint, artifact) + artifact)
            with contextlib.suppress(FileNotFoundError):
                self._touch(h)
        self._evict(keep=h)
        return artifact

    def _read_compiled(self, h: str, fingerprint: str, path: Path) -> bytes | None:
        """The artifact if it is on disk and its MAC is the agent's own; a tampered one is
        removed (and the caller recompiles), never returned."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        mac, artifact = data[:MAC_BYTES], data[MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(h, fingerprint, artifact)):
            log.warning(
                "precompiled artifact %s fails its MAC (modified outside the agent): "
                "discarded, recompiling from the verified module",
                path,
            )
            self._count(tampered_artifacts=1)
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(FileNotFoundError):
            self._touch(h)
        return artifact

    def _mac(self, h: str, fingerprint: str, artifact: bytes) -> bytes:
        mac = hmac.new(self._key, f"{h}\0{fingerprint}\0".encode(), hashlib.sha256)
        mac.update(artifact)
        return mac.digest()

    def _load_or_create_key(self) -> bytes:
        """The node-local MAC key; the first process to start creates it (atomically)."""
        path = self.root / "key"
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(MAC_BYTES)
            tmp = self._tmp / f"key.{os.getpid()}.{uuid.uuid4().hex}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if another process won the race: use its key
            except FileExistsError:
                key = path.read_bytes()
            finally:
                tmp.unlink(missing_ok=True)
        if len(key) != MAC_BYTES:
            raise CacheError(
                f"{path} holds {len(key)} bytes, not a {MAC_BYTES}-byte key; delete it (every "
                "precompiled artifact is then recompiled once)"
            )
        return key

    # -- pins -----------------------------------------------------------------------------

    def pin(self, digest: str) -> None:
        """Keep `digest` from eviction (counted; the module need not be cached yet)."""
        h = hex_of(digest)
        with self._mu:
            if h in self._pins:
                count, fd = self._pins[h]
                self._pins[h] = (count + 1, fd)
                return
        fd = self._acquire(self._locks / f"{h}.pin", fcntl.LOCK_SH)
        with self._mu:
            if h in self._pins:
                count, held = self._pins[h]
                self._pins[h] = (count + 1, held)
                os.close(fd)
            else:
                self._pins[h] = (1, fd)

    def unpin(self, digest: str) -> None:
        h = hex_of(digest)
        with self._mu:
            if h not in self._pins:
                raise CacheError(f"{digest} is not pinned")
            count, fd = self._pins[h]
            if count > 1:
                self._pins[h] = (count - 1, fd)
                return
            del self._pins[h]
        os.close(fd)

    @contextlib.contextmanager
    def pinned(self, digest: str) -> Iterator[None]:
        self.pin(digest)
        try:
            yield
        finally:
            self.unpin(digest)

    def is_pinned(self, digest: str) -> bool:
        with self._mu:
            return hex_of(digest) in self._pins

    # -- stats ----------------------------------------------------------------------------

    def refresh_stats(self) -> CacheStats:
        """Recount bytes and modules from the directory (other processes may have changed it)."""
        entries = self._scan()
        with self._stats_mu:
            self.stats.bytes_on_disk = sum(e.size for e in entries)
            self.stats.modules = sum(1 for e in entries if self._blob(e.hex).exists())
        return self.stats

    def _count(self, **deltas: int) -> None:
        with self._stats_mu:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    # -- internals ------------------------------------------------------------------------

    def _blob(self, h: str) -> Path:
        return self._blobs / h

    def _lookup(self, h: str) -> CachedModule | None:
        path = self._blob(h)
        try:
            size = path.stat().st_size
            self._touch(h)
        except FileNotFoundError:
            return None
        return CachedModule(f"sha256:{h}", path, size, fetched=False)

    def _insert(self, module: ModuleBytes, expected: str | None) -> CachedModule:
        """Verify and store `module`; the caller holds the digest's fetch lock."""
        actual = compute_digest(module.data)
        if expected is not None and actual != expected:
            raise DigestMismatch(expected, actual, module.source)
        if module.digest != actual:
            raise DigestMismatch(module.digest, actual, module.source)
        check_wasm(module.data, module.source)
        h = hex_of(actual)
        path = self._blob(h)
        if not path.exists():
            self._write_atomic(path, module.data)
        self._touch(h)
        if module.manifest_digest is not None:
            alias = self._aliases / hex_of(module.manifest_digest)
            if not alias.exists():
                self._write_atomic(alias, actual.encode())
        self._evict(keep=h)
        return CachedModule(actual, path, len(module.data), fetched=True, source=module.source)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = self._tmp / f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def _touch(self, h: str) -> None:
        # The blob's mtime is its last use: LRU order survives restarts with no index file.
        with self._mu:
            now = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = now
        os.utime(self._blob(h), ns=(now, now))

    @contextlib.contextmanager
    def _digest_lock(self, h: str) -> Iterator[None]:
        # flock orders processes; the thread lock keeps this process's threads from
        # queueing on the kernel lock one file descriptor each.
        with self._mu:
            lock, users = self._thread_locks.get(h, (threading.Lock(), 0))
            self._thread_locks[h] = (lock, users + 1)
        try:
            with lock:
                fd = self._acquire(self._locks / f"{h}.fetch", fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    os.close(fd)
        finally:
            with self._mu:
                lock, users = self._thread_locks[h]
                if users == 1:
                    del self._thread_locks[h]
                else:
                    self._thread_locks[h] = (lock, users - 1)

    def _acquire(self, path: Path, mode: int) -> int:
        """An fd holding flock `mode` on `path`, robust to the file being unlinked meanwhile."""
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, mode)
                if _same_file(fd, path):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # evicted and unlinked while we waited: lock the new file

    def _try_acquire(self, path: Path) -> int | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        if not _same_file(fd, path):
            os.close(fd)
            return None
        return fd

    def _scan(self) -> list[_Entry]:
        entries: dict[str, _Entry] = {}
        for path in self._blobs.iterdir():
            if not _HEX_RE.match(path.name):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            entries[path.name] = _Entry(path.name, st.st_size, st.st_mtime_ns)
        for d in self._compiled.iterdir():
            size = 0
            with contextlib.suppress(FileNotFoundError):
                for f in d.iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        size += f.stat().st_size
            e = entries.get(d.name)
            if e is not None:
                entries[d.name] = _Entry(e.hex, e.size + size, e.last_used_ns)
            elif _HEX_RE.match(d.name):
                # Artifacts whose module is gone are evicted first.
                entries[d.name] = _Entry(d.name, size, 0)
        return list(entries.values())

    def _evict(self, keep: str) -> None:
        """Drop least recently used, unpinned, unlocked modules until under max_bytes."""
        if self.max_bytes is None:
            self.refresh_stats()
            return
        fd = self._acquire(self._locks / "evict", fcntl.LOCK_EX)
        try:
            entries = self._scan()
            total = sum(e.size for e in entries)
            evicted = 0
            for e in sorted(entries, key=lambda e: e.last_used_ns):
                if total <= self.max_bytes:
                    break
                if e.hex == keep or self.is_pinned(f"sha256:{e.hex}"):
                    continue
                if self._remove(e):
                    total -= e.size
                    evicted += 1
        finally:
            os.close(fd)
        self._count(evictions=evicted)
        self.refresh_stats()

    def _remove(self, e: _Entry) -> bool:
        pin_path, fetch_path = self._locks / f"{e.hex}.pin", self._locks / f"{e.hex}.fetch"
        pin_fd = self._try_acquire(pin_path)
        if pin_fd is None:
            return False  # pinned by some thread or process
        try:
            fetch_fd = self._try_acquire(fetch_path)
            if fetch_fd is None:
                return False  # being written or compiled
            try:
                blob = self._blob(e.hex)
                with contextlib.suppress(FileNotFoundError):
                    if blob.stat().st_mtime_ns != e.last_used_ns:
                        return False  # used since the scan
                blob.unlink(missing_ok=True)
                compiled = self._compiled / e.hex
                with contextlib.suppress(FileNotFoundError):
                    for f in compiled.iterdir():
                        f.unlink(missing_ok=True)
                    compiled.rmdir()
                self._drop_aliases_to(f"sha256:{e.hex}")
                # Unlink lock files while holding them; _acquire notices and retries.
                pin_path.unlink(missing_ok=True)
                fetch_path.unlink(missing_ok=True)
                return True
            finally:
                os.close(fetch_fd)
        finally:
            os.close(pin_fd)

    def _drop_aliases_to(self, digest: str) -> None:
        for alias in self._aliases.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if alias.read_text().strip() == digest:
                    alias.unlink()

    def _remove_stale_tmp(self) -> None:
        cutoff = time.time() - _STALE_TMP_SECONDS
        for f in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if f.stat().st_mtime < cutoff:
                    f.unlink()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
