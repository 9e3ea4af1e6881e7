"""Running one revision of one app on this node: command-mode instances, or HTTP serving.

Every command-mode instance has its own thread (wasmtime blocks while a guest runs) that
walks the lifecycle in lifecycle.py and is the only writer of its InstanceStatus. Status
readers get copies; they never touch wasmtime objects.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wasmlet.api.constants import Mode
from wasmlet.api.spec import WasmAppSpec, parse_quantity
from wasmlet_agent.backoff import Backoff
from wasmlet_agent.environment import resolve_env
from wasmlet_agent.lifecycle import Reason, State, check_transition, scale_down_order
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.modulestore import ModuleStore, Ready
from wasmlet_agent.mounts import directory_bytes, prepare_mounts, remove_instance_dir
from wasmlet_agent.objects import ConfigError, ObjectLookup
from wasmlet_agent.restarts import AfterExit, after_exit
from wasmlet_agent.runtime.instances import (
    Cancel,
    InstanceResult,
    InstanceSpec,
    Outcome,
    Preopen,
    run_instance,
)
from wasmlet_agent.runtime.logs import LogBuffer
from wasmlet_agent.runtime.modules import LoadedModule, ModuleError
from wasmlet_agent.sources import SourceError

log = logging.getLogger("wasmlet.agent")

AppKey = tuple[str, str]  # (namespace, name)
# Called (from any thread) when an app's instances change, so status can be reported.
OnChange = Callable[[AppKey], None]
# (app key, type Normal|Warning, reason, message)
EventSink = Callable[[AppKey, str, str, str], None]

_OUTCOME_REASON = {
    Outcome.EXITED: Reason.COMPLETED,
    Outcome.TRAPPED: Reason.TRAPPED,
    Outcome.TIMED_OUT: Reason.TIMED_OUT,
    Outcome.OUT_OF_MEMORY: Reason.OUT_OF_MEMORY,
    Outcome.OUT_OF_FUEL: Reason.OUT_OF_FUEL,
    Outcome.FAILED_TO_START: Reason.INVALID_MODULE,
    Outcome.CANCELLED: Reason.STOPPED,
}


def reason_of(result: InstanceResult) -> Reason:
    if result.outcome is Outcome.EXITED and result.exit_code != 0:
        return Reason.ERROR
    return _OUTCOME_REASON[result.outcome]


def describe(result: InstanceResult) -> str:
    if result.outcome is Outcome.EXITED:
        return f"exited with code {result.exit_code}"
    return f"{result.outcome.value}: {result.message}".strip()


@dataclass
class InstanceStatus:
    """What the agent reports of one instance (a plain record, copied to readers)."""

    name: str
    revision: str
    state: State = State.PULLING
    restarts: int = 0
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    started_at: float | None = None
    memory_bytes: int = 0

    @property
    def ready(self) -> bool:
        # A run that completed successfully did what was asked of it.
        return self.state in (State.RUNNING, State.COMPLETED)


@dataclass
class Services:
    """The agent-wide things every app revision uses."""

    modules: ModuleStore
    lookup: ObjectLookup
    instance_root: Path
    metrics: AgentMetrics | None = None
    on_change: OnChange = lambda key: None
    event: EventSink = lambda key, type_, reason, message: None
    log_lines: int = 1000
    _indexes: dict[tuple[AppKey, str], Iterator[int]] = field(default_factory=dict, repr=False)

    def instance_name(self, key: AppKey, revision: str) -> str:
        """A name no other instance of this agent has had: a revision that is removed and
        applied again must not reuse the names (and directories) of instances still ending."""
        index = next(self._indexes.setdefault((key, revision), itertools.count()))
        return f"{key[1]}-{revision[:6]}-{index}"


@dataclass
class LoadState:
    """The module of a revision: loaded once, shared by its instances."""

    backoff: Backoff  # the app's back-off: a failed pull is retried like a failed run
    ready: Ready | None = None
    error: str = ""
    reason: str | None = None
    next_try: float = 0.0


class AppRevision:
    """Instances of one revision of an app on this node."""

    def __init__(self, key: AppKey, revision: str, spec: WasmAppSpec, services: Services) -> None:
        self.key, self.revision, self.spec, self.services = key, revision, spec, services
        self._load = LoadState(Backoff(spec.backoff.initial_seconds, spec.backoff.max_seconds))
        self._load_lock = threading.Lock()
        self._instances: dict[str, _CommandInstance] = {}
        self._lock = threading.Lock()
        self._preloader: threading.Thread | None = None
        self.logs: dict[str, LogBuffer] = {}
        self.desired = 0
        self.stopped = threading.Event()
        self._http_spec: InstanceSpec | None = None  # http mode: the per-request template

    # --- module -------------------------------------------------------------------------

    def module(self, phase: Callable[[str], None]) -> Ready:
        """The loaded module; raises the load error while backing off after a failure."""
        with self._load_lock:
            if self._load.ready is not None:
                return self._load.ready
            if time.monotonic() < self._load.next_try:
                raise _LoadFailed(self._load.reason or Reason.PULL_FAILED.value, self._load.error)
            ns, name = self.key
            try:
                ready = self.services.modules.load(ns, name, self.spec.module, phase)
            except SourceError as e:
                # The source's reason (DigestMismatch, SourceUnreachable, ...) is CamelCase.
                self._fail_load(e.reason.value, str(e))
                raise _LoadFailed(e.reason.value, str(e)) from e
            except ModuleError as e:
                self._fail_load(Reason.INVALID_MODULE.value, str(e))
                raise _LoadFailed(Reason.INVALID_MODULE.value, str(e)) from e
            self._load.ready = ready
            self._load.error, self._load.reason = "", None
            where = "pulled" if ready.pulled else "from cache"
            self.services.event(
                self.key,
                "Normal",
                "Pulled",
                f"module {ready.digest} ({where}, "
                f"{'compiled' if ready.compiled else 'precompiled'})",
            )
            return ready

    def _fail_load(self, reason: str, message: str) -> None:
        first = self._load.error != message
        self._load.error, self._load.reason = message, reason
        delay = self._load.backoff.on_exit(0)
        self._load.next_try = time.monotonic() + delay
        if self.services.metrics is not None:
            self.services.metrics.pull_errors.labels(reason=reason).inc()
        if first:
            self.services.event(self.key, "Warning", reason, message)

    @property
    def digest(self) -> str | None:
        return self._load.ready.digest if self._load.ready else None

    # --- scaling ------------------------------------------------------------------------

    def scale(self, replicas: int) -> None:
        """Start or stop command-mode instances to have `replicas` of them."""
        if self.spec.mode is Mode.HTTP:
            with self._lock:
                self.desired = replicas
                if replicas and self._preloader is None and not self.stopped.is_set():
                    self._preloader = threading.Thread(
                        target=self._preload,
                        name=f"preload-{self.key[1]}-{self.revision[:6]}",
                        daemon=True,
                    )
                    self._preloader.start()
            self.services.on_change(self.key)
            return
        with self._lock:
            self.desired = replicas
            live = {i.status.name: i for i in self._instances.values() if not i.stopping}
            statuses = [dataclasses.replace(i.status) for i in live.values()]
            for name in scale_down_order(statuses)[: max(len(live) - replicas, 0)]:
                live[name].stop()
            for _ in range(replicas - len(live)):
                name = self.services.instance_name(self.key, self.revision)
                buf = LogBuffer(self.services.log_lines)
                self.logs[name] = buf
                inst = _CommandInstance(self, name, buf)
                self._instances[name] = inst
                inst.start()
        self.services.on_change(self.key)

    def _preload(self) -> None:
        """HTTP mode: load the module and resolve env and volumes once, before serving."""
        backoff = Backoff(self.spec.backoff.initial_seconds, self.spec.backoff.max_seconds)
        while not self.stopped.is_set() and self._http_spec is None:
            try:
                self.module(lambda _p: None)
                self._http_spec = self._build_http_spec()
                self._load.error, self._load.reason = "", None
            except _LoadFailed:
                self.services.on_change(self.key)
                self.stopped.wait(max(self._load.next_try - time.monotonic(), 0.05))
            except ConfigError as e:
                if self._load.error != str(e):
                    self.services.event(self.key, "Warning", Reason.CONFIG_ERROR.value, str(e))
                self._load.error, self._load.reason = str(e), Reason.CONFIG_ERROR.value
                self.services.on_change(self.key)
                self.stopped.wait(backoff.on_exit(0))
            except Exception as e:  # never leave an app stuck loading without saying why
                log.exception("%s/%s: preparing revision %s failed", *self.key, self.revision)
                self._load.error, self._load.reason = str(e), "AgentError"
                self.services.on_change(self.key)
                self.stopped.wait(backoff.on_exit(0))
        if self.stopped.is_set():  # removed while loading: stop() could not clean up
            self._remove_http_dir()
        self.services.on_change(self.key)

    def _build_http_spec(self) -> InstanceSpec:
        # One set of volume directories per revision on this node: instances are per
        # request, so an emptyDir is scratch space shared by this node's requests.
        ns, app = self.key
        directory = self._http_dir()
        env = resolve_env(self.spec, ns, self.services.lookup)
        preopens = prepare_mounts(self.spec, ns, directory, self.services.lookup)
        self.logs.setdefault(f"{app}-{self.revision[:6]}-http", LogBuffer(self.services.log_lines))
        buf = self.logs[f"{app}-{self.revision[:6]}-http"]
        limits = self.spec.limits
        return InstanceSpec(
            args=self.spec.args,
            env=env,
            preopens=[Preopen(os.fspath(p.host_path), p.guest_path, p.writable) for p in preopens],
            memory_limit_bytes=limits.memory_bytes,
            timeout_seconds=float(limits.request_timeout_seconds),
            fuel=limits.fuel,
            stderr=buf.sink("stderr"),
            program_name=app,
            network=self.spec.network.outbound,
        )

    def http_serving(self) -> tuple[LoadedModule, InstanceSpec] | None:
        """(module, per-request template) once an HTTP revision can serve, else None."""
        if self._load.ready is None or self._http_spec is None:
            return None
        return self._load.ready.module, self._http_spec

    def stop(self, wait: float = 5.0) -> None:
        """Stop every instance; wait up to `wait` seconds for their threads to end."""
        self.begin_stop()
        self.join(time.monotonic() + wait)

    def begin_stop(self) -> None:
        self.stopped.set()
        with self._lock:
            instances = list(self._instances.values())
        for inst in instances:
            inst.stop()

    def join(self, deadline: float) -> None:
        """Wait until `deadline` (monotonic) for this revision's threads to end."""
        with self._lock:
            instances = list(self._instances.values())
            preloader = self._preloader
        for inst in instances:
            inst.join(max(deadline - time.monotonic(), 0))
        if preloader is not None:
            preloader.join(max(deadline - time.monotonic(), 0))
        if self.spec.mode is Mode.HTTP and (preloader is None or not preloader.is_alive()):
            self._remove_http_dir()

    def _http_dir(self) -> Path:
        ns, app = self.key
        return self.services.instance_root / ns / app / f"{self.revision[:12]}-http"

    def _remove_http_dir(self) -> None:
        remove_instance_dir(self._http_dir())

    def _forget(self, name: str) -> None:
        with self._lock:
            self._instances.pop(name, None)
        self.services.on_change(self.key)

    # --- reporting ----------------------------------------------------------------------

    def statuses(self) -> list[InstanceStatus]:
        if self.spec.mode is Mode.HTTP:
            # HTTP apps run an instance per request: the revision is ready once loaded.
            state = (
                State.RUNNING
                if self._http_spec is not None
                else (State.BACK_OFF if self._load.error else State.PULLING)
            )
            return [
                InstanceStatus(
                    f"{self.key[1]}-{self.revision[:6]}-http-{i}",
                    self.revision,
                    state,
                    reason=self._load.reason or "",
                    message=self._load.error,
                )
                for i in range(self.desired)
            ]
        with self._lock:
            return [dataclasses.replace(i.status) for i in self._instances.values()]


STORAGE_CHECK_SECONDS = 1.0


class _StorageWatch:
    """Stops a run whose emptyDir outgrows its sizeLimit: checked every second while it
    runs and once when it ends (a guest may write and exit between two checks)."""

    def __init__(self, limits: list[tuple[str, Path, int]], cancel: Cancel) -> None:
        self.limits, self.cancel = limits, cancel
        self.over: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if limits:
            self._thread = threading.Thread(target=self._run, name="storage-watch", daemon=True)
            self._thread.start()

    def _check(self) -> str | None:
        for name, path, limit in self.limits:
            used = directory_bytes(path)
            if used > limit:
                return (
                    f"emptyDir {name} holds {used} bytes, over its sizeLimit of {limit} bytes; "
                    "the instance was stopped"
                )
        return None

    def _run(self) -> None:
        while not self._done.wait(STORAGE_CHECK_SECONDS):
            self.over = self._check()
            if self.over is not None:
                self.cancel.cancel()
                return

    def finish(self) -> str | None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self.limits and self.over is None:
            self.over = self._check()
        return self.over


class _LoadFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _CommandInstance:
    """One supervised command-mode instance; its thread is the only writer of `status`."""

    def __init__(self, revision: AppRevision, name: str, logs: LogBuffer) -> None:
        self.rev = revision
        self.status = InstanceStatus(name, revision.revision)
        self.logs = logs
        self.cancel = Cancel()
        self.stopping = False
        self._wake = threading.Event()
        spec = revision.spec
        self.backoff = Backoff(spec.backoff.initial_seconds, spec.backoff.max_seconds)
        self.thread = threading.Thread(target=self._run, name=f"instance-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.cancel.cancel()
        self._wake.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    # --- the lifecycle, on this instance's thread ----------------------------------------

    def _to(self, state: State, reason: str = "", message: str = "") -> None:
        check_transition(self.status.state, state)
        self.status.state = state
        self.status.reason, self.status.message = reason, message
        self.rev.services.on_change(self.rev.key)

    def _sleep(self, seconds: float) -> bool:
        """Wait; False if the instance was stopped meanwhile."""
        self._wake.wait(seconds)
        return not self.stopping

    def _run(self) -> None:
        key = self.rev.key
        instance_dir = self.rev.services.instance_root / key[0] / key[1] / self.status.name
        try:
            self._loop(instance_dir)
        except Exception as e:  # never let one instance take the agent down
            log.exception("instance %s failed unexpectedly", self.status.name)
            if self.status.state is not State.STOPPED:
                self.status.state, self.status.reason = State.FAILED, "AgentError"
                self.status.message = str(e)
        finally:
            if self.status.state is not State.STOPPED:
                self.status.state = State.STOPPED
                self.status.reason = Reason.STOPPED.value
            remove_instance_dir(instance_dir)
            self.rev._forget(self.status.name)

    def _loop(self, instance_dir: Path) -> None:
        rev, status = self.rev, self.status
        metrics = rev.services.metrics
        ns, app = rev.key
        while not self.stopping:
            if status.state is State.BACK_OFF:
                self._to(State.PULLING if rev.digest is None else State.STARTING)
            if status.state is State.PULLING:
                try:
                    rev.module(lambda phase: self._phase(phase))
                except _LoadFailed as e:
                    self._to(State.BACK_OFF, e.reason, str(e))
                    if not self._sleep(max(rev._load.next_try - time.monotonic(), 0.05)):
                        break
                    continue
                if status.state is State.PULLING:
                    self._to(State.COMPILING)
                self._to(State.STARTING)
            ready = rev._load.ready
            assert ready is not None
            try:
                spec = self._instance_spec(instance_dir)
            except ConfigError as e:
                self._to(State.BACK_OFF, Reason.CONFIG_ERROR.value, str(e))
                rev.services.event(rev.key, "Warning", Reason.CONFIG_ERROR.value, str(e))
                if not self._sleep(self.backoff.on_exit(0)):
                    break
                continue
            status.started_at = time.time()
            # Until the run ends (and reports its peak) the instance holds at least the
            # initial linear memory the module declares.
            status.memory_bytes = ready.module.min_memory_bytes
            self._to(State.RUNNING)
            rev.services.event(rev.key, "Normal", "Started", f"instance {status.name}")
            t0 = time.monotonic()
            self.cancel = Cancel()  # one per run: a storage stop must not stick to the next
            if self.stopping:
                break
            storage = _StorageWatch(self._size_limits(instance_dir), self.cancel)
            result = run_instance(ready.module, spec, self.cancel)
            over = storage.finish()
            ran_for = time.monotonic() - t0
            if metrics is not None:
                metrics.cold_start.labels(app=app, phase="instantiate").observe(
                    result.instantiate_seconds
                )
            status.memory_bytes = result.peak_memory_bytes
            status.exit_code = result.exit_code
            if self.stopping:
                break
            reason = reason_of(result)
            what = describe(result)
            succeeded = result.succeeded
            if over is not None:  # like the kubelet's eviction for ephemeral storage
                reason, what, succeeded = Reason.EPHEMERAL_STORAGE, over, False
            if metrics is not None:
                metrics.exits.labels(namespace=ns, app=app, reason=reason.value).inc()
            ended = State.EXITED if result.outcome is Outcome.EXITED else State.TRAPPED
            self._to(ended, reason.value, what)
            if not succeeded:
                rev.services.event(
                    rev.key, "Warning", reason.value, f"instance {status.name}: {what}"
                )
            decision = after_exit(rev.spec.restart_policy, succeeded)
            if decision is AfterExit.COMPLETE:
                self._to(State.COMPLETED, reason.value, what)
                self._wake.wait()  # stays until stopped
                break
            if decision is AfterExit.FAIL:
                self._to(State.FAILED, reason.value, what)
                self._wake.wait()
                break
            delay = self.backoff.on_exit(ran_for)
            self._to(State.BACK_OFF, reason.value, f"{what}; restarting in {delay:g}s")
            if not self._sleep(delay):
                break
            status.restarts += 1
            if metrics is not None:
                metrics.restarts.labels(namespace=ns, app=app, reason=reason.value).inc()
        self._to(State.STOPPED, Reason.STOPPED.value)

    def _size_limits(self, instance_dir: Path) -> list[tuple[str, Path, int]]:
        """(volume, directory, bytes) of this instance's emptyDirs that have a sizeLimit."""
        mounted = {m.name for m in self.rev.spec.volume_mounts}
        return [
            (v.name, instance_dir / "volumes" / v.name, parse_quantity(v.empty_dir.size_limit,
             "spec.volumes[].emptyDir.sizeLimit"))
            for v in self.rev.spec.volumes
            if v.empty_dir is not None and v.empty_dir.size_limit and v.name in mounted
        ]  # fmt: skip

    def _phase(self, phase: str) -> None:
        if phase == "compile" and self.status.state is State.PULLING:
            self._to(State.COMPILING)

    def _instance_spec(self, instance_dir: Path) -> InstanceSpec:
        rev = self.rev
        spec, (ns, app) = rev.spec, rev.key
        env = resolve_env(spec, ns, rev.services.lookup)
        preopens = prepare_mounts(spec, ns, instance_dir, rev.services.lookup)
        return InstanceSpec(
            args=spec.args,
            env=env,
            preopens=[Preopen(os.fspath(p.host_path), p.guest_path, p.writable) for p in preopens],
            memory_limit_bytes=spec.limits.memory_bytes,
            timeout_seconds=spec.limits.timeout_seconds or None,
            fuel=spec.limits.fuel,
            stdout=self.logs.sink("stdout"),
            stderr=self.logs.sink("stderr"),
            program_name=app,
            network=spec.network.outbound,
        )
