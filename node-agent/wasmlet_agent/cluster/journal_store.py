"""The journal on disk: read once at start, rewritten atomically whenever what it holds
changes, so a crash or power cut leaves the previous journal or the new one, never half.

Layout and checks are in `journal.py`; this module only moves bytes (temp file + fsync +
rename, then fsync of the directory) and keeps the directory and files private.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from pathlib import Path

from wasmlet_agent.cluster.journal import (
    KEY_BYTES,
    NONCE_BYTES,
    JournalState,
    encode,
    fingerprint,
    pruned,
)
from wasmlet_agent.cluster.journal import decode as decode_journal

log = logging.getLogger("wasmlet.agent.journal")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (mode 0600): readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


class JournalStore:
    """`<cache-dir>/journal` of one node (0700; every file 0600)."""

    def __init__(self, directory: Path, node: str) -> None:
        self.dir, self.node = directory, node
        self.path = directory / "journal.json"
        self.secrets_dir = directory / "secrets"
        self._written = ""
        self._lock = threading.Lock()

    def _key(self, create: bool) -> bytes | None:
        path = self.dir / "key"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            if not create:
                return None
        key = secrets.token_bytes(KEY_BYTES)
        write_atomic(path, key)
        return key

    def _private_dirs(self) -> None:
        for d in (self.dir, self.secrets_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)

    def load(self) -> JournalState | None:
        """The journal, None if there is none; JournalError if it must not be used."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        files = {}
        if self.secrets_dir.is_dir():
            files = {p.name: p.read_bytes() for p in self.secrets_dir.iterdir() if p.is_file()}
        state = decode_journal(data, files, self.node, self._key(create=False), str(self.path))
        self._written = fingerprint(state)
        return state

    def save(self, state: JournalState) -> bool:
        """Write the journal if its content changed (True if written). Thread-safe."""
        state = pruned(state)
        with self._lock:
            fp = fingerprint(state)
            if fp == self._written:
                return False
            self._private_dirs()
            key = self._key(create=True)
            assert key is not None
            doc, files = encode(state, key, lambda: secrets.token_bytes(NONCE_BYTES))
            for name, sealed in files.items():
                target = self.secrets_dir / name
                if not target.exists():
                    write_atomic(target, sealed)
            write_atomic(self.path, doc)
            for p in self.secrets_dir.iterdir():
                if p.name not in files:  # nothing names it any more
                    p.unlink(missing_ok=True)
            self._written = fp
            return True
