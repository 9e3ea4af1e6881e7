"""The node agent's core: make this node run exactly the desired apps, and say how it went.

Level-triggered: `apply()` takes the whole desired set (from placements, or from manifest
files in standalone mode) and changes only the difference. A new revision of an app is
started next to the old one, and the old one is scaled down only as new instances become
ready, so an app never drops below its ready count on this node during an update.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from wasmlet.api.constants import Mode
from wasmlet.api.spec import WasmAppSpec
from wasmlet_agent.lifecycle import State
from wasmlet_agent.supervisor import AppKey, AppRevision, InstanceStatus, Services

log = logging.getLogger("wasmlet.agent")


@dataclass(frozen=True)
class DesiredApp:
    key: AppKey
    revision: str
    spec: WasmAppSpec
    replicas: int


@dataclass
class AppReport:
    """What this node runs of one app, for placement status and the agent API."""

    key: AppKey
    revision: str
    desired: int
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    digest: str | None = None
    instances: list[InstanceStatus] = field(default_factory=list)
    problem: tuple[str, str] | None = None  # (reason, message) when something is wrong


# States in which an instance is failing rather than on its way.
_FAILING = {State.BACK_OFF, State.FAILED, State.TRAPPED}


class Agent:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._apps: dict[AppKey, list[AppRevision]] = {}  # oldest first, last is current
        self._desired: dict[AppKey, DesiredApp] = {}
        self._lock = threading.RLock()

    # --- desired state --------------------------------------------------------------------

    def apply(self, desired: Iterable[DesiredApp]) -> None:
        with self._lock:
            wanted = {d.key: d for d in desired}
            for key in list(self._apps):
                if key not in wanted:
                    self._remove(key)
            self._desired = wanted
            for d in wanted.values():
                revisions = self._apps.setdefault(d.key, [])
                if not revisions or revisions[-1].revision != d.revision:
                    previous = next((r for r in revisions if r.revision == d.revision), None)
                    if previous is not None:
                        # Rolling back to a revision still running here: keep its instances.
                        revisions.remove(previous)
                        revisions.append(previous)
                    else:
                        revisions.append(AppRevision(d.key, d.revision, d.spec, self.services))
                self._roll(d.key)

    def _remove(self, key: AppKey) -> None:
        for rev in self._apps.pop(key, []):
            rev.stop(wait=0)
        self._desired.pop(key, None)

    def _roll(self, key: AppKey) -> None:
        """Scale the current revision to desired and old ones down by what is ready."""
        d = self._desired[key]
        revisions = self._apps[key]
        current = revisions[-1]
        if current.desired != d.replicas:
            current.scale(d.replicas)
        new_ready = sum(1 for s in current.statuses() if s.ready)
        budget = max(d.replicas - new_ready, 0)
        for old in revisions[:-1]:
            keep = min(budget, sum(1 for s in old.statuses() if s.ready))
            if keep == 0:
                old.stop(wait=0)
                revisions.remove(old)
                log.info("%s/%s: revision %s replaced", *key, old.revision)
            elif old.desired != keep:
                old.scale(keep)
            budget -= keep

    def resync(self) -> None:
        """Re-evaluate rollovers; call when instances change state."""
        with self._lock:
            for key in list(self._apps):
                if key in self._desired:
                    self._roll(key)

    def http_revision(self, key: AppKey) -> AppRevision | None:
        """The newest revision of an HTTP app whose module is loaded (it serves requests)."""
        with self._lock:
            for rev in reversed(self._apps.get(key, [])):
                if rev.spec.mode is Mode.HTTP and rev.http_serving() and rev.desired > 0:
                    return rev
        return None

    def stop(self, wait: float = 5.0) -> None:
        with self._lock:
            revisions = [r for revs in self._apps.values() for r in revs]
            self._apps.clear()
            self._desired.clear()
        for rev in revisions:
            rev.begin_stop()
        deadline = time.monotonic() + wait
        for rev in revisions:
            rev.join(deadline)

    # --- reporting ------------------------------------------------------------------------

    def desired(self) -> list[DesiredApp]:
        with self._lock:
            return list(self._desired.values())

    def app_keys(self) -> list[AppKey]:
        with self._lock:
            return sorted(self._desired)

    def digests_in_use(self) -> set[str]:
        """Digests of the modules the revisions on this node have loaded."""
        with self._lock:
            return {r.digest for revs in self._apps.values() for r in revs if r.digest}

    def revisions(self, key: AppKey) -> list[AppRevision]:
        with self._lock:
            return list(self._apps.get(key, []))

    def report(self, key: AppKey) -> AppReport | None:
        with self._lock:
            d = self._desired.get(key)
            revisions = list(self._apps.get(key, []))
        if d is None:
            return None
        rep = AppReport(key, d.revision, d.replicas)
        for rev in revisions:
            statuses = rev.statuses()
            rep.instances.extend(statuses)
            rep.replicas += len(statuses)
            rep.ready += sum(1 for s in statuses if s.ready)
            if rev.revision == d.revision:
                rep.updated = sum(1 for s in statuses if s.ready)
                rep.digest = rev.digest
        failing = [s for s in rep.instances if s.state in _FAILING and s.reason]
        if failing and rep.updated < d.replicas:
            rep.problem = (failing[0].reason, failing[0].message)
        return rep
