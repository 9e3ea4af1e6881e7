"""HTTP-mode revisions: a fresh instance per request, from a module and template made ready once.

The revision loads its module and resolves env and volumes on a preload thread before it
serves; its "instances" in status are the replicas wanted here, ready once it can serve, or,
with spec.http.readinessCheck, once that check passes. A thread of the revision then runs the
check: a GET through invoke_cgi with the module and template requests get (a fresh instance
each), in process, so the check cannot be aimed at any other address. It runs beside the app's
request workers, so a busy app does not queue its own check, and is counted in
wasmlet_readiness_checks, not as a request. A failing check restarts and stops nothing.

Its emptyDirs are scratch space shared by the node's requests. The preload thread checks
them every second: one over its sizeLimit (bytes or inodes) stops the revision serving new
requests (507, reason EphemeralStorageExceeded in status and an Event), and after the app's
back-off it serves again from fresh, empty directories, as a restarted pod gets a fresh
emptyDir. The full ones are removed once requests still running on them have timed out.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

from wasmlet.api.placements import InstanceStatus, Reason
from wasmlet.api.spec import ReadinessCheck, WasmAppSpec
from wasmlet.version import wasmlet_version
from wasmlet_agent.backoff import Backoff
from wasmlet_agent.instance_spec import build_instance_spec
from wasmlet_agent.lifecycle import State
from wasmlet_agent.objects import ConfigError
from wasmlet_agent.readiness import Readiness, observe, result_of, split_target
from wasmlet_agent.revision import AppKey, LoadFailed, ModuleLoader, Services
from wasmlet_agent.runtime.cgi import CgiRequest, CgiResponse, ServerInfo, invoke_cgi
from wasmlet_agent.runtime.instances import InstanceSpec
from wasmlet_agent.runtime.logs import LogBuffer
from wasmlet_agent.runtime.modules import LoadedModule
from wasmlet_agent.runtime.usage import InFlight, Usage
from wasmlet_agent.volumes import (
    STORAGE_CHECK_SECONDS,
    check_storage,
    remove_instance_dir,
    size_limits,
)

log = logging.getLogger("wasmlet.agent")


class HttpRevision:
    """One revision of an HTTP app on this node: what each request's instance is made from."""

    def __init__(self, key: AppKey, revision: str, spec: WasmAppSpec, services: Services) -> None:
        self.key, self.revision, self.spec, self.services = key, revision, spec, services
        self.loader = ModuleLoader(key, spec, services)
        self.on_cpu = services.cpu_counter(key)
        self.inflight = InFlight()  # the requests' instances running now
        self.logs: dict[str, LogBuffer] = {}
        self.desired = 0
        self.stopped = threading.Event()
        self._template: InstanceSpec | None = None
        self._problem: tuple[str, str] | None = None  # (reason, message) while not serving
        http = spec.http
        self.check: ReadinessCheck | None = http.readiness_check if http is not None else None
        # Replaced whole by the check thread (never mutated), read by any thread.
        self.readiness = Readiness(ready=self.check is None)
        self._full: str | None = None  # why new requests are refused (an emptyDir is full)
        self._generation = 0  # of the scratch directories: a fresh set after a full one
        self._preloader: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def digest(self) -> str | None:
        return self.loader.digest

    def scale(self, replicas: int) -> None:
        with self._lock:
            if self.desired == replicas:
                return  # nothing changes: the controller is not woken again
            self.desired = replicas
            if replicas and self._preloader is None and not self.stopped.is_set():
                self._preloader = threading.Thread(
                    target=self._preload,
                    name=f"preload-{self.key[1]}-{self.revision[:6]}",
                    daemon=True,
                )
                self._preloader.start()
        self.services.on_change(self.key)

    def serving(self) -> tuple[LoadedModule, InstanceSpec] | None:
        """(module, per-request template) once this revision can serve, else None."""
        ready, template = self.loader.ready, self._template
        if ready is None or template is None or self.desired == 0 or self._full is not None:
            return None
        return ready.module, template

    def invoke(
        self, module: LoadedModule, request: CgiRequest, template: InstanceSpec
    ) -> CgiResponse:
        """Serve one request with a fresh instance (blocks: a worker thread), counted in
        this revision's memory while in flight and in the app's CPU time."""
        usage = Usage(self.on_cpu)
        with self.inflight.track(usage):
            return invoke_cgi(module, request, template, usage=usage)

    def memory_bytes(self) -> int:
        return self.inflight.memory_bytes()

    def refusal(self) -> tuple[int, str] | None:
        """(HTTP status, body) for requests while this revision refuses them, else None."""
        full = self._full
        return (507, f"{full}\n") if full is not None and self.desired else None

    def _preload(self) -> None:
        """Load the module and resolve env and volumes, retrying with back-off; then run the
        readiness check (on a thread of its own) and guard the scratch directories' limits
        until stopped."""
        backoff = Backoff(self.spec.backoff.initial_seconds, self.spec.backoff.max_seconds)
        checker: threading.Thread | None = None
        while not self.stopped.is_set():
            self._prepare(backoff)
            if self.check is not None and checker is None and self._template is not None:
                self.services.on_change(self.key)  # serving (not ready yet) before the first check
                checker = threading.Thread(
                    target=self._check_loop, args=(self.check,), daemon=True,
                    name=f"readiness {self.key[0]}/{self.key[1]} {self.revision[:12]}",
                )  # fmt: skip
                checker.start()
            if self._template is None or not self._guard_storage(backoff):
                break
        if checker is not None:
            checker.join()  # it ends when the revision stops
        if self.stopped.is_set():  # removed while loading: join() could not clean up
            remove_instance_dir(self._directory())
        self.services.on_change(self.key)

    def _prepare(self, backoff: Backoff) -> None:
        while not self.stopped.is_set() and self._template is None:
            try:
                self.loader.load(lambda _phase: None)
                self._template = self._build_template()
                self._problem = None
            except LoadFailed as e:
                self._problem = (e.reason, str(e))
                self.services.on_change(self.key)
                self.stopped.wait(self.loader.retry_in())
            except ConfigError as e:
                if self._problem != (e.reason, str(e)):
                    self.services.event(self.key, "Warning", e.reason, str(e))
                self._problem = (e.reason, str(e))
                self.services.on_change(self.key)
                self.stopped.wait(backoff.on_exit(0))
            except Exception as e:  # never leave an app stuck loading without saying why
                log.exception("%s/%s: preparing revision %s failed", *self.key, self.revision)
                self._problem = (Reason.AGENT_ERROR, str(e))
                self.services.on_change(self.key)
                self.stopped.wait(backoff.on_exit(0))
        self.services.on_change(self.key)

    def _guard_storage(self, backoff: Backoff) -> bool:
        """Check the scratch directories every second until stopped; when one is full,
        refuse requests, wait the back-off and serve again from a fresh, empty set. True if
        the fresh set could not be prepared (the caller prepares it again)."""
        limits = size_limits(self.spec, self._volumes())
        if not limits:
            return False
        since = time.monotonic()
        retired: list[tuple[float, Path]] = []  # (when to remove, directory)
        try:
            while not self.stopped.wait(STORAGE_CHECK_SECONDS):
                now = time.monotonic()
                for when, old in [r for r in retired if r[0] <= now]:
                    remove_instance_dir(old)
                    retired.remove((when, old))
                problem = check_storage(limits)
                if problem is None:
                    continue
                delay = backoff.on_exit(now - since)
                self._full = (f"{problem}; new requests are refused, and served again from "
                              f"empty directories in {delay:g}s")  # fmt: skip
                self.services.event(self.key, "Warning", Reason.EPHEMERAL_STORAGE, self._full)
                self.services.on_change(self.key)
                # Requests still running write to the old set until their timeout.
                grace = self.spec.limits.request_timeout_seconds + 5
                retired.append((now + max(delay, grace), self._volumes()))
                self._generation += 1
                if self.stopped.wait(delay):
                    return False
                try:
                    template = self._build_template()
                except Exception:  # e.g. a Secret removed meanwhile: _prepare reports it
                    self._template, self._full = None, None
                    return True
                self._template, self._full = template, None
                limits = size_limits(self.spec, self._volumes())
                since = time.monotonic()
                self.services.on_change(self.key)
            return False
        finally:
            for _, old in retired:
                remove_instance_dir(old)

    def ready(self) -> bool:
        """Serving, and its readiness check (if any) passes: it may take requests over."""
        return self.serving() is not None and self.readiness.ready

    def _check_loop(self, check: ReadinessCheck) -> None:
        """Run the readiness check every periodSeconds until the revision stops."""
        if self.stopped.wait(check.initial_delay_seconds):
            return
        while not self.stopped.is_set():
            started = time.monotonic()
            if self.desired > 0:  # scaled to zero here: nothing to report on
                self._check_once(check)
            self.stopped.wait(max(check.period_seconds - (time.monotonic() - started), 0))

    def _check_once(self, check: ReadinessCheck) -> None:
        ready, template = self.loader.ready, self._template
        if ready is None or template is None:  # being prepared again (a full emptyDir)
            return
        path, query = split_target(check.path)
        port = self.spec.http.port if self.spec.http is not None else 0
        request = CgiRequest(
            "GET", path=path, query=query,
            headers=[("User-Agent", f"wasmlet-readiness/{wasmlet_version()}")],
            server=ServerInfo(server_name="localhost", server_port=port),
        )  # fmt: skip
        # The check's own deadline instead of requestTimeoutSeconds; all else as requests get.
        spec = dataclasses.replace(template, timeout_seconds=float(check.timeout_seconds))
        try:
            resp = invoke_cgi(ready.module, request, spec)
            result = result_of(check.path, resp.status, resp.error, check.timeout_seconds)
        except Exception as e:  # the check must go on, and say what went wrong
            log.exception("%s/%s: readiness check of %s failed in the agent", *self.key,
                          self.revision)  # fmt: skip
            result = result_of(check.path, 500, f"error in the agent: {e}", check.timeout_seconds)
        before = self.readiness
        after = observe(before, check, result)
        self.readiness = after
        if self.services.metrics is not None:
            self.services.metrics.readiness_checks.labels(
                namespace=self.key[0], app=self.key[1],
                result="successful" if result.passed else "failed",
            ).inc()  # fmt: skip
        if after.ready != before.ready:
            log.info("%s/%s: revision %s %s: %s", *self.key, self.revision,
                     "ready" if after.ready else "not ready", result.detail)  # fmt: skip
        if (after.ready, after.problem()) != (before.ready, before.problem()):
            self.services.on_change(self.key)

    def _build_template(self) -> InstanceSpec:
        # One set of volume directories per revision on this node: instances are per
        # request, so an emptyDir is scratch space shared by this node's requests.
        # Each request's stderr reaches the sink once, after its run (runtime/cgi.py keeps it
        # in a memfd meanwhile), so no Python runs while the guest writes; the sink appends
        # it to the ring and to one file per revision, ending an unfinished last line there.
        app = self.key[1]
        name = f"{app}-{self.revision[:6]}-http"
        buf = self.logs.get(name)
        if buf is None:
            buf = self.logs[name] = self.services.new_log(self.key, self.revision, name)
        return build_instance_spec(
            self.spec, self.key[0], app, self._volumes(), self.services.lookup,
            stdout=None, stderr=buf.complete_sink("stderr"),
            host_paths=self.services.host_paths,
        )  # fmt: skip

    def _directory(self) -> Path:
        ns, app = self.key
        return self.services.instance_root / ns / app / f"{self.revision[:12]}-http"

    def _volumes(self) -> Path:
        """This generation's directory (its `volumes/` holds the emptyDirs and projections)."""
        return self._directory() / str(self._generation)

    def statuses(self) -> list[InstanceStatus]:
        # Instances are per request: the revision's replicas are ready once it can serve and
        # its readiness check (if any) passes.
        readiness = self.readiness
        reason: str
        if self._full is not None:
            state, (reason, message) = State.BACK_OFF, (Reason.EPHEMERAL_STORAGE, self._full)
        elif self._template is not None:
            state, (reason, message) = State.RUNNING, readiness.problem() or ("", "")
        elif self._problem is not None:
            state, (reason, message) = State.BACK_OFF, self._problem
        else:
            state, (reason, message) = State.PULLING, ("", "")
        prefix = f"{self.key[1]}-{self.revision[:6]}-http"
        return [
            InstanceStatus(
                f"{prefix}-{i}",
                self.revision,
                state,
                reason=reason,
                message=message,
                check_passed=readiness.ready,
            )
            for i in range(self.desired)
        ]

    def begin_stop(self) -> None:
        self.stopped.set()

    def join(self, deadline: float) -> None:
        with self._lock:
            preloader = self._preloader
        if preloader is not None:
            preloader.join(max(deadline - time.monotonic(), 0))
        if preloader is None or not preloader.is_alive():
            remove_instance_dir(self._directory())
        for buf in list(self.logs.values()):
            buf.close()  # requests still in flight after this write nowhere
