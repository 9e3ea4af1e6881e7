"""Guest output in files where node log shippers look: the kubelet's `/var/log/pods` layout.

    <log-dir>/                                   0700, the agent's uid
      <namespace>_<app>_<revision>/              0700; one per revision on this node
        <app>-<rev6>-<n>/0.log                   0600; a command instance, CRI format
        <app>-<rev6>-<n>/0.log.20261201-113607   rotated (kubelet's naming), oldest removed
        <app>-<rev6>-http/0.log                  an HTTP revision's per-request stderr

A line is `<RFC3339Nano> <stdout|stderr> <F|P> <text>` (containerd's and CRI-O's format: `P`
for the pieces of a line cut at the maximum line length, `F` for the piece that ends it), so
the `cri` parsers of Fluent Bit, Vector and Promtail read it, and the directory name gives
namespace and app the way `<namespace>_<pod>_<uid>` does for pods. Only the agent's uid can
read (0700 directories, 0600 files): a shipper runs as root or as that uid. Guests never see
this directory (it is one of the agent directories hostPath volumes may not reach).

Files are written by whoever drains the output (the one output reader thread per agent, or an
instance's own thread for short runs), a chunk at a time: one write() per pipe read. A file is
rotated when the next chunk would take it past `max_bytes` (checked at write time, so it is
never over by more than one chunk), keeping `max_files` files with the current one. The
directory of a revision no longer on the node is removed `gc_grace` seconds after it left,
like the kubelet's removal of the logs of deleted pods, with time for a shipper to read the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("wasmlet.agent")

LOG_NAME = "0.log"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # the kubelet's containerLogMaxSize
DEFAULT_MAX_FILES = 5  # the kubelet's containerLogMaxFiles (the current file included)
DEFAULT_GC_GRACE = 60.0


# --- pure decisions ----------------------------------------------------------------------


def app_dir_name(namespace: str, app: str, revision: str) -> str:
    """`<namespace>_<app>_<revision>`: names are DNS labels, so `_` separates unambiguously."""
    return f"{namespace}_{app}_{revision}"


def is_app_dir_name(name: str) -> bool:
    parts = name.split("_")
    return len(parts) == 3 and all(parts)


def should_rotate(size: int, incoming: int, max_bytes: int) -> bool:
    """Rotate before a write that would take a non-empty file past `max_bytes`."""
    return size > 0 and size + incoming > max_bytes


def rotated_name(now: float, taken: Iterable[str]) -> str:
    """`0.log.<YYYYMMDD-HHMMSS>` (the kubelet's), with `.N` added should that second be taken."""
    base = f"{LOG_NAME}.{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}"
    names, n, name = set(taken), 1, base
    while name in names:
        name, n = f"{base}.{n}", n + 1
    return name


def _rotation_order(name: str) -> tuple[str, int]:
    stamp, _, n = name.removeprefix(f"{LOG_NAME}.").partition(".")
    return stamp, int(n) if n.isdigit() else 0


def expired_rotations(names: Iterable[str], max_files: int) -> list[str]:
    """The rotated files to delete so that, with the current file, `max_files` remain."""
    rotated = sorted((n for n in names if n.startswith(f"{LOG_NAME}.")), key=_rotation_order)
    keep = max(max_files - 1, 0)
    return rotated[: len(rotated) - keep] if len(rotated) > keep else []


def plan_gc(
    present: Iterable[str],
    live: set[str],
    gone_since: Mapping[str, float],
    now: float,
    grace: float,
) -> tuple[list[str], dict[str, float]]:
    """(app directories to remove, when each not-live directory was first seen not live).

    Only names shaped like ours are considered; a directory that is live again is kept."""
    remove, seen = [], {}
    for name in present:
        if not is_app_dir_name(name) or name in live:
            continue
        since = gone_since.get(name, now)
        if now - since >= grace:
            remove.append(name)
        else:
            seen[name] = since
    return sorted(remove), seen


# --- files -------------------------------------------------------------------------------


def _private_dir(path: Path) -> None:
    """`path` and the parents this creates, 0700 (mkdir's mode is cut by the umask, and an
    existing directory keeps its own, so both are set explicitly)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for p in {path, *missing}:
        p.chmod(0o700)


@dataclass(frozen=True)
class Rotation:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES


class LogFile:
    """One instance's `0.log`, opened at the first write (an idle instance holds no fd)."""

    def __init__(self, path: Path, rotation: Rotation) -> None:
        self.path, self.rotation = path, rotation
        self._fd: int | None = None
        self._size = 0
        self._failed = False

    def append(self, data: bytes) -> None:
        """Write `data` (whole CRI lines); never raises: a full disk must not stop the guest
        or the reader thread, so a failure is logged once per file and the data dropped."""
        try:
            if self._fd is None:
                self._open()
            if should_rotate(self._size, len(data), self.rotation.max_bytes):
                self._rotate()
            assert self._fd is not None
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            self._size += len(data)
            self._failed = False
        except OSError as e:
            if not self._failed:
                log.warning("writing guest output to %s failed: %s", self.path, e)
            self._failed = True

    def _open(self) -> None:
        _private_dir(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._fd, self._size = fd, os.fstat(fd).st_size

    def _rotate(self) -> None:
        self.close()
        directory = self.path.parent
        names = os.listdir(directory)
        os.rename(self.path, directory / rotated_name(time.time(), names))
        for name in expired_rotations(os.listdir(directory), self.rotation.max_files):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


@dataclass
class LogDirs:
    """Where this agent writes guest output (None: nowhere, only the in-memory rings)."""

    root: Path | None = None
    rotation: Rotation = field(default_factory=Rotation)
    gc_grace: float = DEFAULT_GC_GRACE
    _gone_since: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def prepare(self) -> None:
        if self.root is not None:
            _private_dir(self.root)

    def file(self, namespace: str, app: str, revision: str, instance: str) -> LogFile | None:
        if self.root is None:
            return None
        path = self.root / app_dir_name(namespace, app, revision) / instance / LOG_NAME
        return LogFile(path, self.rotation)

    def collect(self, live: Iterable[tuple[str, str, str]], now: float | None = None) -> list[str]:
        """Remove the directories of revisions that left this node over `gc_grace` ago;
        `live` holds the (namespace, app, revision) it runs. Returns the names removed."""
        if self.root is None:
            return []
        try:
            present = os.listdir(self.root)
        except OSError:
            return []
        names = {app_dir_name(*k) for k in live}
        with self._lock:
            remove, self._gone_since = plan_gc(
                present, names, self._gone_since, time.time() if now is None else now,
                self.gc_grace,
            )  # fmt: skip
        for name in remove:
            shutil.rmtree(self.root / name, ignore_errors=True)
        if remove:
            log.info("removed the logs of %d revision(s) no longer on this node", len(remove))
        return remove
