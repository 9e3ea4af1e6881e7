"""HTTP-mode revisions: a fresh instance per request, from a module and template made ready once.

The revision loads its module and resolves env and volumes on a preload thread before it
serves; its "instances" in status are the replicas wanted here, ready once it can serve.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from wasmlet.api.placements import InstanceStatus, Reason
from wasmlet.api.spec import WasmAppSpec
from wasmlet_agent.backoff import Backoff
from wasmlet_agent.instance_spec import build_instance_spec
from wasmlet_agent.lifecycle import State
from wasmlet_agent.objects import ConfigError
from wasmlet_agent.revision import AppKey, LoadFailed, ModuleLoader, Services
from wasmlet_agent.runtime.instances import InstanceSpec
from wasmlet_agent.runtime.logs import LogBuffer
from wasmlet_agent.runtime.modules import LoadedModule
from wasmlet_agent.volumes import remove_instance_dir

log = logging.getLogger("wasmlet.agent")


class HttpRevision:
    """One revision of an HTTP app on this node: what each request's instance is made from."""

    def __init__(self, key: AppKey, revision: str, spec: WasmAppSpec, services: Services) -> None:
        self.key, self.revision, self.spec, self.services = key, revision, spec, services
        self.loader = ModuleLoader(key, spec, services)
        self.logs: dict[str, LogBuffer] = {}
        self.desired = 0
        self.stopped = threading.Event()
        self._template: InstanceSpec | None = None
        self._problem: tuple[str, str] | None = None  # (reason, message) while not serving
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
        if ready is None or template is None or self.desired == 0:
            return None
        return ready.module, template

    def _preload(self) -> None:
        """Load the module and resolve env and volumes once, retrying with back-off."""
        backoff = Backoff(self.spec.backoff.initial_seconds, self.spec.backoff.max_seconds)
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
        if self.stopped.is_set():  # removed while loading: join() could not clean up
            remove_instance_dir(self._directory())
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
            self.spec, self.key[0], app, self._directory(), self.services.lookup,
            stdout=None, stderr=buf.complete_sink("stderr"),
            host_paths=self.services.host_paths,
        )  # fmt: skip

    def _directory(self) -> Path:
        ns, app = self.key
        return self.services.instance_root / ns / app / f"{self.revision[:12]}-http"

    def statuses(self) -> list[InstanceStatus]:
        # Instances are per request: the revision's replicas are ready once it can serve.
        if self._template is not None:
            state, (reason, message) = State.RUNNING, ("", "")
        elif self._problem is not None:
            state, (reason, message) = State.BACK_OFF, self._problem
        else:
            state, (reason, message) = State.PULLING, ("", "")
        prefix = f"{self.key[1]}-{self.revision[:6]}-http"
        return [
            InstanceStatus(f"{prefix}-{i}", self.revision, state, reason=reason, message=message)
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
