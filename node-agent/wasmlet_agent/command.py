"""Command-mode revisions: supervised instances that each run `_start` on a thread of their own.

Every instance walks the lifecycle in lifecycle.py on its own thread (wasmtime blocks while
a guest runs) and is the only writer of its InstanceStatus; readers get copies and never
touch wasmtime objects. Whatever goes wrong around a run, expected or not, ends in BackOff
with the reason in status: an instance is stopped only when its revision asks.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from wasmlet.api.placements import InstanceStatus, Reason
from wasmlet.api.spec import WasmAppSpec
from wasmlet_agent.backoff import Backoff
from wasmlet_agent.instance_spec import build_instance_spec
from wasmlet_agent.lifecycle import State, check_transition, scale_down_order
from wasmlet_agent.objects import ConfigError
from wasmlet_agent.restarts import AfterExit, after_exit
from wasmlet_agent.revision import AppKey, LoadFailed, ModuleLoader, Services
from wasmlet_agent.runtime.instances import Cancel, InstanceResult, Outcome, run_instance
from wasmlet_agent.runtime.logs import LogBuffer
from wasmlet_agent.runtime.outputs import capture_output
from wasmlet_agent.runtime.usage import Usage
from wasmlet_agent.volumes import StorageWatch, remove_instance_dir, size_limits

log = logging.getLogger("wasmlet.agent")

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


class CommandRevision:
    """The command-mode instances of one revision of an app on this node."""

    def __init__(self, key: AppKey, revision: str, spec: WasmAppSpec, services: Services) -> None:
        self.key, self.revision, self.spec, self.services = key, revision, spec, services
        self.loader = ModuleLoader(key, spec, services)
        self.on_cpu = services.cpu_counter(key)
        self.logs: dict[str, LogBuffer] = {}
        self.desired = 0
        self._instances: dict[str, CommandInstance] = {}
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def digest(self) -> str | None:
        return self.loader.digest

    def scale(self, replicas: int) -> None:
        """Start or stop instances to have `replicas` live ones (idempotent)."""
        with self._lock:
            if self._stopped:
                return
            changed = self.desired != replicas
            self.desired = replicas
            live = {i.status.name: i for i in self._instances.values() if not i.stopping}
            changed = changed or len(live) != replicas
            statuses = [dataclasses.replace(i.status) for i in live.values()]
            for name in scale_down_order(statuses)[: max(len(live) - replicas, 0)]:
                live[name].stop()
            for _ in range(replicas - len(live)):
                name = self.services.instance_name(self.key, self.revision)
                buf = self.services.new_log(self.key, self.revision, name)
                self.logs[name] = buf
                directory = self.services.instance_root / self.key[0] / self.key[1] / name
                inst = CommandInstance(
                    name, self, directory, buf, on_end=self._forget
                )  # fmt: skip
                self._instances[name] = inst
                inst.start()
        if changed:  # a scale that changes nothing must not wake the controller again
            self.services.on_change(self.key)

    def live(self) -> int:
        with self._lock:
            return sum(1 for i in self._instances.values() if not i.stopping)

    def statuses(self) -> list[InstanceStatus]:
        with self._lock:
            return [i.snapshot() for i in self._instances.values()]

    def memory_bytes(self) -> int:
        return sum(s.memory_bytes for s in self.statuses() if s.state is State.RUNNING)

    def begin_stop(self) -> None:
        with self._lock:
            self._stopped = True
            instances = list(self._instances.values())
        for inst in instances:
            inst.stop()

    def join(self, deadline: float) -> None:
        """Wait until `deadline` (monotonic) for this revision's threads to end."""
        with self._lock:
            instances = list(self._instances.values())
        for inst in instances:
            inst.join(max(deadline - time.monotonic(), 0))

    def _forget(self, name: str) -> None:
        with self._lock:
            self._instances.pop(name, None)
        self.services.on_change(self.key)


class CommandInstance:
    """One supervised instance; its thread is the only writer of `status`."""

    def __init__(
        self,
        name: str,
        revision: CommandRevision,
        directory: Path,
        logs: LogBuffer,
        on_end: Callable[[str], None],
    ) -> None:
        self.key, self.spec, self.services = revision.key, revision.spec, revision.services
        self.loader, self.on_cpu = revision.loader, revision.on_cpu
        self.status = InstanceStatus(name, revision.revision)
        self.usage = Usage()  # the current run's, sampled on this thread while it runs
        self.directory, self.logs, self.on_end = directory, logs, on_end
        self.cancel = Cancel()
        self.stopping = False
        self._wake = threading.Event()
        self.backoff = Backoff(self.spec.backoff.initial_seconds, self.spec.backoff.max_seconds)
        self.thread = threading.Thread(target=self._run, name=f"instance-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.cancel.cancel()
        self._wake.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def snapshot(self) -> InstanceStatus:
        """A copy of the status; while running, with the memory sampled live."""
        status, usage = dataclasses.replace(self.status), self.usage
        if status.state is State.RUNNING and usage.memory_bytes:
            status.memory_bytes = usage.memory_bytes
        return status

    # --- the lifecycle, on this instance's thread ----------------------------------------

    def _to(self, state: State, reason: str = "", message: str = "") -> None:
        check_transition(self.status.state, state)
        self.status.state = state
        self.status.reason, self.status.message = reason, message
        self.services.on_change(self.key)

    def _sleep(self, seconds: float) -> bool:
        """Wait; False if the instance was stopped meanwhile."""
        self._wake.wait(seconds)
        return not self.stopping

    def _run(self) -> None:
        try:
            while not self.stopping:
                try:
                    if not self._step():
                        break
                except Exception as e:  # never lose an instance to the unexpected
                    log.exception("instance %s: unexpected error; backing off", self.status.name)
                    if not self._back_off(Reason.AGENT_ERROR, f"agent error: {e}", 0.0):
                        break
        finally:
            if self.status.state is not State.STOPPED:
                self.status.state, self.status.reason = State.STOPPED, Reason.STOPPED
            remove_instance_dir(self.directory)
            self.logs.close()  # its file too: an ended instance holds no descriptor
            self.on_end(self.status.name)

    def _back_off(self, reason: str, message: str, ran_for: float) -> bool:
        """Into BackOff for the back-off's next delay; False if stopped meanwhile."""
        delay = self.backoff.on_exit(ran_for)
        if self.status.state is not State.BACK_OFF:
            self._to(State.BACK_OFF, reason, f"{message}; restarting in {delay:g}s")
        else:
            self.status.reason, self.status.message = reason, message
            self.services.on_change(self.key)
        return self._sleep(delay)

    def _step(self) -> bool:
        """One start-run-end of the instance; False when it is to run no more."""
        status, metrics = self.status, self.services.metrics
        ns, app = self.key
        if status.state is State.BACK_OFF:
            self._to(State.PULLING if self.loader.ready is None else State.STARTING)
        if status.state is State.PULLING:
            try:
                self.loader.load(self._phase)
            except LoadFailed as e:
                self._to(State.BACK_OFF, e.reason, str(e))
                return self._sleep(self.loader.retry_in())
            if status.state is State.PULLING:
                self._to(State.COMPILING)
            self._to(State.STARTING)
        ready = self.loader.ready
        assert ready is not None
        try:
            spec = build_instance_spec(
                self.spec, ns, app, self.directory, self.services.lookup,
                stdout=None, stderr=None, host_paths=self.services.host_paths,
            )  # fmt: skip
        except ConfigError as e:
            self.services.event(self.key, "Warning", e.reason, str(e))
            return self._back_off(e.reason, str(e), 0.0)
        status.started_at = time.time()
        # Until the first sample the instance holds at least the initial linear memory the
        # module declares; at the end, status keeps the final (peak) size.
        status.memory_bytes = ready.module.min_memory_bytes
        self.usage = usage = Usage(self.on_cpu)
        self._to(State.RUNNING)
        self.services.event(self.key, "Normal", Reason.STARTED, f"instance {status.name}")
        t0 = time.monotonic()
        self.cancel = Cancel()  # one per run: a storage stop must not stick to the next
        if self.stopping:
            return False
        storage = StorageWatch(size_limits(self.spec, self.directory), self.cancel)
        # Output through pipes, not a Python call per write; all of it is in the log
        # before the end is reported.
        output = capture_output(self.logs.write)
        try:
            spec = dataclasses.replace(
                spec, stdout_path=output.stdout_path, stderr_path=output.stderr_path
            )
            result = run_instance(ready.module, spec, self.cancel, usage)
        finally:
            output.finish()
            self.logs.flush()  # a last line without its newline ends with the run
        over = storage.finish()
        ran_for = time.monotonic() - t0
        if metrics is not None:
            metrics.cold_start.labels(namespace=ns, app=app, phase="instantiate").observe(
                result.instantiate_seconds
            )
        status.memory_bytes = result.peak_memory_bytes
        status.exit_code = result.exit_code
        if self.stopping:
            return False
        reason, what, succeeded = reason_of(result), describe(result), result.succeeded
        if over is not None:  # like the kubelet's eviction for ephemeral storage
            reason, what, succeeded = Reason.EPHEMERAL_STORAGE, over, False
        if metrics is not None:
            metrics.exits.labels(namespace=ns, app=app, reason=reason.value).inc()
        self._to(State.EXITED if result.outcome is Outcome.EXITED else State.TRAPPED, reason, what)
        if not succeeded:
            self.services.event(self.key, "Warning", reason, f"instance {status.name}: {what}")
        decision = after_exit(self.spec.restart_policy, succeeded)
        if decision is not AfterExit.RESTART:
            final = State.COMPLETED if decision is AfterExit.COMPLETE else State.FAILED
            self._to(final, reason, what)
            self._wake.wait()  # stays until stopped
            return False
        if not self._back_off(reason, what, ran_for):
            return False
        status.restarts += 1
        if metrics is not None:
            metrics.restarts.labels(namespace=ns, app=app, reason=reason.value).inc()
        return True

    def _phase(self, phase: str) -> None:
        if phase == "compile" and self.status.state is State.PULLING:
            self._to(State.COMPILING)
