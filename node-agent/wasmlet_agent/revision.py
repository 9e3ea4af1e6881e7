"""What every revision of an app on this node shares: the agent-wide services it uses, and
its module, loaded once for all its instances and retried with the app's back-off."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from wasmlet.api.placements import InstanceStatus, Reason
from wasmlet.api.spec import WasmAppSpec
from wasmlet_agent.backoff import Backoff
from wasmlet_agent.host_paths import HostPathPolicy
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.modulestore import ModuleStore, Phase, Ready
from wasmlet_agent.objects import ObjectLookup
from wasmlet_agent.runtime.logfiles import LogDirs
from wasmlet_agent.runtime.logs import DEFAULT_MAX_BYTES, LogBuffer
from wasmlet_agent.runtime.modules import ModuleError
from wasmlet_agent.runtime.usage import OnCpu
from wasmlet_agent.sources import SourceError

log = logging.getLogger("wasmlet.agent")

AppKey = tuple[str, str]  # (namespace, name)
# Called (from any thread) when an app's instances change state.
OnChange = Callable[[AppKey], None]
# (app key, type Normal|Warning, reason, message)
EventSink = Callable[[AppKey, str, str, str], None]


@dataclass
class Services:
    """The agent-wide things every app revision uses."""

    modules: ModuleStore
    lookup: ObjectLookup
    instance_root: Path
    metrics: AgentMetrics | None = None
    host_paths: HostPathPolicy = field(default_factory=HostPathPolicy)  # default: none allowed
    on_change: OnChange = lambda key: None
    event: EventSink = lambda key, type_, reason, message: None
    log_dirs: LogDirs = field(default_factory=LogDirs)  # default: no files, rings only
    log_buffer_bytes: int = DEFAULT_MAX_BYTES  # each instance's in-memory ring
    _indexes: dict[tuple[AppKey, str], Iterator[int]] = field(default_factory=dict, repr=False)
    _index_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cpu_counter(self, key: AppKey) -> OnCpu | None:
        """What a run of this app passes its CPU time to; the series exists from then on."""
        if self.metrics is None:
            return None
        return self.metrics.cpu.labels(namespace=key[0], app=key[1]).inc

    def instance_name(self, key: AppKey, revision: str) -> str:
        """A name no other instance of this agent has had: a revision that is removed and
        applied again must not reuse the names (and directories) of instances still ending."""
        with self._index_lock:
            index = next(self._indexes.setdefault((key, revision), itertools.count()))
        return f"{key[1]}-{revision[:6]}-{index}"

    def new_log(self, key: AppKey, revision: str, instance: str) -> LogBuffer:
        """The ring of one instance (or HTTP revision), writing its file under the log dir."""
        file = self.log_dirs.file(key[0], key[1], revision, instance)
        return LogBuffer(self.log_buffer_bytes, file=file)


class LoadFailed(Exception):
    """The module cannot be had now; `reason` is a placement-status Reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ModuleLoader:
    """One revision's module: loaded once, shared by its instances. After a failure it is
    tried again only when the app's back-off allows, however many instances ask."""

    def __init__(self, key: AppKey, spec: WasmAppSpec, services: Services) -> None:
        self.key, self.spec, self.services = key, spec, services
        self.ready: Ready | None = None
        self.error = ""
        self.reason: str | None = None
        self._next_try = 0.0
        self._backoff = Backoff(spec.backoff.initial_seconds, spec.backoff.max_seconds)
        self._lock = threading.Lock()

    @property
    def digest(self) -> str | None:
        return self.ready.digest if self.ready else None

    def retry_in(self) -> float:
        """Seconds until the next attempt is allowed (at least a short pause)."""
        return max(self._next_try - time.monotonic(), 0.05)

    def load(self, phase: Phase) -> Ready:
        """The loaded module; raises LoadFailed (also while backing off after a failure)."""
        with self._lock:
            if self.ready is not None:
                return self.ready
            if time.monotonic() < self._next_try:
                raise LoadFailed(self.reason or Reason.SOURCE_UNREACHABLE, self.error)
            ns, name = self.key
            try:
                ready = self.services.modules.load(ns, name, self.spec.module, phase)
            except SourceError as e:
                raise self._failed(e.reason, str(e)) from e
            except ModuleError as e:
                raise self._failed(Reason.INVALID_MODULE, str(e)) from e
            except Exception as e:  # an API error reading a pull Secret, a cache eviction...
                log.exception("%s/%s: loading the module failed unexpectedly", ns, name)
                raise self._failed(Reason.AGENT_ERROR, f"loading the module failed: {e}") from e
            self.ready = ready
            self.error, self.reason = "", None
            where = "pulled" if ready.pulled else "from cache"
            how = "compiled" if ready.compiled else "precompiled"
            self.services.event(
                self.key, "Normal", Reason.PULLED, f"module {ready.digest} ({where}, {how})"
            )
            return ready

    def _failed(self, reason: str, message: str) -> LoadFailed:
        first = self.error != message
        self.error, self.reason = message, reason
        self._next_try = time.monotonic() + self._backoff.on_exit(0)
        if self.services.metrics is not None:
            self.services.metrics.pull_errors.labels(reason=reason).inc()
        if first:
            self.services.event(self.key, "Warning", reason, message)
        return LoadFailed(reason, message)


class Revision(Protocol):
    """One revision of one app on this node, as the app controller drives it."""

    key: AppKey
    revision: str
    spec: WasmAppSpec
    desired: int
    logs: dict[str, LogBuffer]

    @property
    def digest(self) -> str | None: ...
    def scale(self, replicas: int) -> None: ...
    def statuses(self) -> list[InstanceStatus]: ...
    def memory_bytes(self) -> int: ...
    def begin_stop(self) -> None: ...
    def join(self, deadline: float) -> None: ...
