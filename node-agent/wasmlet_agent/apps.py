"""The apps on this node: one controller per app, driven by desired state and instance changes.

`Apps.apply()` takes the whole desired set (from placements, or from manifest files in
standalone mode). Each app's controller reconciles when its desired state changes and when
one of its instances changes state (a work queue coalesces bursts), so scaling, replacing a
lost instance and rolling over all happen in one place; reporting only reads.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from wasmlet.api.constants import Mode
from wasmlet.api.placements import AppReport, InstanceState, Reason
from wasmlet.api.spec import WasmAppSpec
from wasmlet_agent.command import CommandRevision
from wasmlet_agent.http_revision import HttpRevision
from wasmlet_agent.revision import AppKey, Revision, Services
from wasmlet_agent.rollover import RevisionView, plan_rollover
from wasmlet_agent.workqueue import WorkQueue

log = logging.getLogger("wasmlet.agent")

# Every app is reconciled at least this often, whatever happens (level-triggered safety net).
RESYNC_SECONDS = 10.0
# States in which an instance is failing rather than on its way.
_FAILING = {InstanceState.BACK_OFF, InstanceState.FAILED, InstanceState.TRAPPED}


@dataclass(frozen=True)
class DesiredApp:
    key: AppKey
    revision: str
    spec: WasmAppSpec
    replicas: int


def _ready(rev: Revision) -> int:
    return sum(1 for s in rev.statuses() if s.ready)


class AppController:
    """One app on this node: its revisions, oldest first; the last is the desired one."""

    def __init__(self, desired: DesiredApp, services: Services) -> None:
        self.key, self.services = desired.key, services
        self.desired = desired
        self.revisions: list[Revision] = []
        self._lock = threading.RLock()
        self.set_desired(desired)

    def set_desired(self, desired: DesiredApp) -> bool:
        """Take a new desired state; True if it differs from the one held."""
        with self._lock:
            changed = desired != self.desired or not self.revisions
            self.desired = desired
            if self.revisions and self.revisions[-1].revision == desired.revision:
                return changed
            previous = next((r for r in self.revisions if r.revision == desired.revision), None)
            if previous is not None:  # rolling back to a revision still running here
                self.revisions.remove(previous)
                self.revisions.append(previous)
            else:
                kind = HttpRevision if desired.spec.mode is Mode.HTTP else CommandRevision
                self.revisions.append(kind(self.key, desired.revision, desired.spec, self.services))
            return True

    def reconcile(self) -> bool:
        """Scale the desired revision and wind older ones down; True if one was removed."""
        with self._lock:
            current, older = self.revisions[-1], self.revisions[:-1]
            current.scale(self.desired.replicas)  # also replaces instances that were lost
            plan = plan_rollover(
                self.desired.replicas,
                _ready(current),
                [RevisionView(r.revision, r.desired, _ready(r)) for r in older],
            )
            for rev in older:
                if rev.revision in plan.remove:
                    rev.begin_stop()
                    rev.join(time.monotonic())
                    self.revisions.remove(rev)
                    log.info("%s/%s: revision %s replaced", *self.key, rev.revision)
                elif rev.revision in plan.scale:
                    rev.scale(plan.scale[rev.revision])
            return bool(plan.remove)

    def begin_stop(self) -> list[Revision]:
        with self._lock:
            revisions, self.revisions = self.revisions, []
        for rev in revisions:
            rev.begin_stop()
        return revisions

    def report(self) -> AppReport:
        with self._lock:
            d, revisions = self.desired, list(self.revisions)
        rep = AppReport(d.key, d.revision, d.replicas)
        for rev in revisions:
            statuses = rev.statuses()
            rep.instances.extend(statuses)
            rep.replicas += len(statuses)
            rep.ready += sum(1 for s in statuses if s.ready)
            rep.memory_bytes += rev.memory_bytes()
            if rev.revision == d.revision:
                rep.updated = sum(1 for s in statuses if s.ready)
                rep.digest = rev.digest
        failing = [s for s in rep.instances if s.reason and not s.ready and (
            s.state in _FAILING or s.reason == Reason.READINESS_CHECK_FAILED)]  # fmt: skip
        if failing and rep.updated < d.replicas:
            rep.problem = (failing[0].reason, failing[0].message)
        return rep

    def http_revision(self) -> HttpRevision | None:
        """The newest ready revision (its readiness check passes), else the newest that can
        serve at all: an old revision keeps the requests until a new one is ready, and a
        revision that fails its check still serves when nothing better is here. If none can
        serve, the newest that refuses requests with a reason of its own (its emptyDir is full)."""
        with self._lock:
            revisions = [r for r in self.revisions if isinstance(r, HttpRevision)]
        newest_ready = next((r for r in reversed(revisions) if r.ready()), None)
        if newest_ready is not None:
            return newest_ready
        serving = next((r for r in reversed(revisions) if r.serving() is not None), None)
        if serving is not None:
            return serving
        return next((r for r in reversed(revisions) if r.refusal() is not None), None)


class Apps:
    """Every app on this node."""

    def __init__(self, services: Services, on_report: Callable[[], None]) -> None:
        self.services = dataclasses.replace(services, on_change=self._instance_changed)
        self._on_report = on_report
        self._controllers: dict[AppKey, AppController] = {}
        self._lock = threading.Lock()
        self._queue: WorkQueue[AppKey] = WorkQueue(self._reconcile, "app-controller")
        self._stop = threading.Event()
        self._applied = False  # log directories are collected only once the desired set is known
        self._resync = threading.Thread(target=self._resync_loop, name="app-resync", daemon=True)
        self._resync.start()

    def apply(self, desired: Iterable[DesiredApp]) -> None:
        wanted = {d.key: d for d in desired}
        removed: list[AppController] = []
        with self._lock:
            for key in list(self._controllers):
                if key not in wanted:
                    removed.append(self._controllers.pop(key))
            for key, d in wanted.items():
                controller = self._controllers.get(key)
                if controller is None:
                    self._controllers[key] = AppController(d, self.services)
                elif not controller.set_desired(d):
                    continue
                self._queue.add(key)
            self._applied = True
        for controller in removed:
            for rev in controller.begin_stop():
                rev.join(time.monotonic())
        if removed:
            self._forget_unused_modules()
        self._on_report()

    def _instance_changed(self, key: AppKey) -> None:
        self._queue.add(key)
        self._on_report()

    def _reconcile(self, key: AppKey) -> None:
        with self._lock:
            controller = self._controllers.get(key)
        if controller is not None and controller.reconcile():
            self._forget_unused_modules()

    def _forget_unused_modules(self) -> None:
        # Compiled modules no revision uses leave memory (the disk cache keeps them).
        self.services.modules.forget_unused(self.digests_in_use())

    def _resync_loop(self) -> None:
        while not self._stop.wait(RESYNC_SECONDS):
            for key in self.app_keys():
                self._queue.add(key)
            self.collect_logs()

    def collect_logs(self) -> list[str]:
        """Remove the log directories of revisions that left this node (after a grace)."""
        if not self._applied:
            return []
        with self._lock:
            controllers = list(self._controllers.values())
        live = {(*c.key, r.revision) for c in controllers for r in list(c.revisions)}
        try:
            return self.services.log_dirs.collect(live)
        except Exception:  # never let the resync loop die over a directory
            log.exception("removing old log directories failed")
            return []

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued reconcile has run (tests)."""
        return self._queue.drain(timeout)

    # --- reading ---------------------------------------------------------------------------

    def app_keys(self) -> list[AppKey]:
        with self._lock:
            return sorted(self._controllers)

    def desired(self) -> list[DesiredApp]:
        with self._lock:
            return [c.desired for c in self._controllers.values()]

    def report(self, key: AppKey) -> AppReport | None:
        with self._lock:
            controller = self._controllers.get(key)
        return controller.report() if controller is not None else None

    def revisions(self, key: AppKey) -> list[Revision]:
        with self._lock:
            controller = self._controllers.get(key)
        return list(controller.revisions) if controller is not None else []

    def http_revision(self, key: AppKey) -> HttpRevision | None:
        with self._lock:
            controller = self._controllers.get(key)
        return controller.http_revision() if controller is not None else None

    def digests_in_use(self) -> set[str]:
        """Digests of the modules the revisions on this node have loaded."""
        with self._lock:
            controllers = list(self._controllers.values())
        return {r.digest for c in controllers for r in list(c.revisions) if r.digest}

    def stop(self, wait: float = 5.0) -> None:
        """Stop every instance; wait up to `wait` seconds for their threads to end."""
        self._stop.set()
        self._queue.close()
        with self._lock:
            controllers = list(self._controllers.values())
            self._controllers.clear()
        revisions = [rev for c in controllers for rev in c.begin_stop()]
        deadline = time.monotonic() + wait
        for rev in revisions:
            rev.join(deadline)
