"""spec.volumes/volumeMounts as directories preopened for one instance, and their size limits.

An instance directory holds `volumes/<name>` for each mounted emptyDir, ConfigMap and Secret;
hostPaths are preopened where they are, if `host_paths.py` allows them. An emptyDir's
sizeLimit bounds its bytes and its inodes (like the kubelet's eviction for ephemeral
storage): `StorageWatch` stops a command-mode run that outgrows it; an HTTP revision checks
its shared scratch directories the same way (`http_revision.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from wasmlet.api.placements import Reason
from wasmlet.api.spec import Volume, WasmAppSpec, parse_quantity
from wasmlet_agent.host_paths import HostPathPolicy, check_host_path
from wasmlet_agent.objects import ConfigError, ObjectLookup, config_map_files, secret_files
from wasmlet_agent.runtime.instances import Cancel


@dataclass(frozen=True)
class Preopen:
    host_path: Path
    guest_path: str
    writable: bool


def _project(files: dict[str, bytes], target: Path) -> None:
    """Make `target` hold exactly `files`, read-only; keys are plain names (the API server
    guarantees it). An instance that restarts sees the object as it is now: changed keys
    are rewritten, removed keys disappear."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {n: c for n, c in files.items() if "/" not in n and n not in (".", "..", "")}
    for entry in os.scandir(target):
        if entry.name not in wanted:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
    for name, content in wanted.items():
        # Replace by rename: the old file is read-only (and may be open), the directory not.
        tmp = target / f"{name}~wasmlet-tmp"  # "~" is not allowed in object keys
        tmp.unlink(missing_ok=True)
        tmp.write_bytes(content)
        tmp.chmod(0o444)
        os.replace(tmp, target / name)


def _writable(volume: Volume, read_only: bool | None) -> bool:
    # ConfigMap and Secret projections are read-only whatever the mount says.
    if volume.config_map is not None or volume.secret is not None:
        return False
    if read_only is None:
        return volume.writable_by_default()
    return not read_only


def prepare_mounts(
    spec: WasmAppSpec,
    namespace: str,
    instance_dir: Path,
    lookup: ObjectLookup,
    host_paths: HostPathPolicy | None = None,
) -> list[Preopen]:
    """Create each mounted volume's directory for one instance; ConfigError names the field.

    hostPaths pass `host_paths` (default: none allowed) and are preopened by their resolved
    path, so a symlink swapped after the check cannot redirect the preopen to a refused place.
    """
    policy = host_paths or HostPathPolicy()
    volumes = {v.name: (i, v) for i, v in enumerate(spec.volumes)}
    preopens: list[Preopen] = []
    for m in spec.volume_mounts:
        i, vol = volumes[m.name]
        path = f"spec.volumes[{i}]"
        host = instance_dir / "volumes" / vol.name
        if vol.empty_dir is not None:
            host.mkdir(parents=True, exist_ok=True)
        elif vol.config_map is not None:
            obj = lookup.config_map(namespace, vol.config_map.name)
            if obj is None:
                raise ConfigError(
                    f"{path}.configMap", f"ConfigMap {namespace}/{vol.config_map.name} not found"
                )
            _project(config_map_files(obj), host)
        elif vol.secret is not None:
            obj = lookup.secret(namespace, vol.secret.secret_name)
            if obj is None:
                raise ConfigError(
                    f"{path}.secret", f"Secret {namespace}/{vol.secret.secret_name} not found"
                )
            _project(secret_files(obj), host)
        else:
            assert vol.host_path is not None
            refused = check_host_path(vol.host_path.path, policy.prefixes(), policy.agent_dirs)
            if refused is not None:
                raise ConfigError(
                    f"{path}.hostPath.path", refused, reason=Reason.HOST_PATH_FORBIDDEN
                )
            host = Path(os.path.realpath(vol.host_path.path))
            if not host.is_dir():
                raise ConfigError(
                    f"{path}.hostPath.path", f"{host} is not a directory on this node"
                )
        preopens.append(Preopen(host, m.mount_path, _writable(vol, m.read_only)))
    return preopens


class Usage(NamedTuple):
    bytes: int  # of regular files
    inodes: int  # files, directories and symlinks below the root


def directory_usage(root: Path, stop_after_inodes: int | None = None) -> Usage:
    """What an emptyDir holds. Counting ends once past `stop_after_inodes`, so a guest that
    made a million empty files costs one bounded walk, not a million stats."""
    total = inodes = 0
    stack = [os.fspath(root)]
    while stack:
        try:
            listing = os.scandir(stack.pop())
        except OSError:  # removed meanwhile, or not a directory
            continue
        with listing:
            for entry in listing:
                inodes += 1
                if stop_after_inodes is not None and inodes > stop_after_inodes:
                    return Usage(total, inodes)
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
    return Usage(total, inodes)


def remove_instance_dir(instance_dir: Path) -> None:
    """Delete an instance's own files (emptyDirs, projections); hostPaths live elsewhere.

    A guest may have left symlinks in its emptyDir that point anywhere on the host: nothing
    here follows one (chmod would change the target's mode; rmtree only unlinks them).
    """
    for dirpath, dirs, _files in os.walk(instance_dir):
        for name in dirs:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                if not os.path.islink(path):
                    # Directories must be writable for their entries to be removed.
                    os.chmod(path, 0o700)
    shutil.rmtree(instance_dir, ignore_errors=True)


STORAGE_CHECK_SECONDS = 1.0
# Files and directories count too, as a disk charges each at least one block: an emptyDir
# may hold one inode per BYTES_PER_INODE of its sizeLimit (ext4's `small` inode ratio), and
# never fewer than MIN_INODES, so a guest making a million empty files is stopped as well.
BYTES_PER_INODE = 4096
MIN_INODES = 64


def inode_limit(size_limit: int) -> int:
    return max(size_limit // BYTES_PER_INODE, MIN_INODES)


class StorageLimit(NamedTuple):
    volume: str
    path: Path
    bytes: int
    inodes: int


def size_limits(spec: WasmAppSpec, instance_dir: Path) -> list[StorageLimit]:
    """The limits of an instance's (or HTTP revision's) mounted emptyDirs with a sizeLimit."""
    mounted = {m.name for m in spec.volume_mounts}
    out = []
    for v in spec.volumes:
        if v.empty_dir is not None and v.empty_dir.size_limit and v.name in mounted:
            size = parse_quantity(v.empty_dir.size_limit, "spec.volumes[].emptyDir.sizeLimit")
            out.append(StorageLimit(v.name, instance_dir / "volumes" / v.name, size,
                                    inode_limit(size)))  # fmt: skip
    return out


def over_limit(limit: StorageLimit, used: Usage) -> str | None:
    """Which limit `used` exceeds, in words; None within both."""
    if used.bytes > limit.bytes:
        return (f"emptyDir {limit.volume} holds {used.bytes} bytes, over its sizeLimit of "
                f"{limit.bytes} bytes")  # fmt: skip
    if used.inodes > limit.inodes:
        return (f"emptyDir {limit.volume} holds {used.inodes} or more files and directories, "
                f"over its limit of {limit.inodes} (one per {BYTES_PER_INODE} bytes of "
                "sizeLimit)")  # fmt: skip
    return None


def check_storage(limits: list[StorageLimit]) -> str | None:
    """The first emptyDir over a limit, in words; None if all are within."""
    for limit in limits:
        problem = over_limit(limit, directory_usage(limit.path, limit.inodes))
        if problem is not None:
            return problem
    return None


class StorageWatch:
    """Stops a command-mode run whose emptyDir outgrows its sizeLimit (bytes or inodes):
    checked every second while it runs and once when it ends (a guest may write and exit
    between two checks)."""

    def __init__(self, limits: list[StorageLimit], cancel: Cancel) -> None:
        self.limits, self.cancel = limits, cancel
        self.over: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if limits:
            self._thread = threading.Thread(target=self._run, name="storage-watch", daemon=True)
            self._thread.start()

    def _check(self) -> str | None:
        problem = check_storage(self.limits)
        return None if problem is None else f"{problem}; the instance was stopped"

    def _run(self) -> None:
        while not self._done.wait(STORAGE_CHECK_SECONDS):
            self.over = self._check()
            if self.over is not None:
                self.cancel.cancel()
                return

    def finish(self) -> str | None:
        """Stop watching; the message if the run went over a limit, else None."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self.limits and self.over is None:
            self.over = self._check()
        return self.over
