"""ConfigMaps and Secrets read once per node, then followed by a watch on that one name.

An instance resolves its env and volumes on every start, so a crash loop of many replicas
that read the API server each time would load it in proportion to restarts. Like the
kubelet's default `Watch` change-detection strategy, the first read of an object is a GET;
from then on a watch with `fieldSelector=metadata.name=<name>` from that resourceVersion
keeps the cached copy current (changed, deleted, created again), and every later read is
answered from memory. API load is then one GET and one long-lived watch per referenced
object per node, whatever the number of replicas or restarts.

RBAC: the API server authorizes a list or watch whose field selector names one object as a
request for that name, so the per-node grant Roles (`operator/wasmlet_operator/grants.py`)
allow `get` and `watch` on exactly the referenced names; no `list` is needed.

When a watch fails (the grant was narrowed, the API server restarted, the link broke) the
copy stays in use for `retry_seconds`, then the next read GETs it again and starts a new
watch: reads stay bounded by time, not by restarts, even while watching is impossible.
`retain()` drops what no placement names any more.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from wasmlet.api.references import references

log = logging.getLogger("wasmlet.agent.objects")

Key = tuple[str, str, str]  # (kind, namespace, name); kind is "ConfigMap" or "Secret"
WATCH_SECONDS = 240  # a watch is re-opened from its resourceVersion this often
RETRY_SECONDS = 5.0  # after a failed watch, the copy is trusted this long before a GET


def referenced(placements: Iterable[tuple[str, Mapping[str, Any]]]) -> set[Key]:
    """The objects that (namespace, placement) pairs' templates name: what stays cached."""
    keys: set[Key] = set()
    for namespace, placement in placements:
        refs = references((placement.get("spec") or {}).get("template") or {})
        keys |= {("Secret", namespace, n) for n in refs.secrets}
        keys |= {("ConfigMap", namespace, n) for n in refs.config_maps}
    return keys


def contents(obj: Any) -> Mapping[str, Any]:
    """What the agent keeps of a ConfigMap or Secret (V1ConfigMap/V1Secret)."""
    return {"data": obj.data or {}, "binaryData": getattr(obj, "binary_data", None) or {}}


@dataclass
class _Entry:
    value: Mapping[str, Any] | None  # None: the object does not exist
    version: str | None  # resourceVersion the watch resumes from (None when absent)
    valid_until: float = float("inf")  # monotonic; finite once the watch failed
    watcher: watch.Watch | None = field(default=None, repr=False)


class ObjectCache:
    """An ObjectLookup over the API server that reads each object once and then watches it."""

    def __init__(
        self,
        core: client.CoreV1Api,
        *,
        watch_seconds: int = WATCH_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core, self.watch_seconds, self.retry_seconds = core, watch_seconds, retry_seconds
        self.clock = clock
        self._entries: dict[Key, _Entry] = {}
        self._gates: dict[Key, threading.Lock] = {}
        self._lock = threading.Lock()
        self._closed = False

    # --- ObjectLookup --------------------------------------------------------------------

    def config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._lookup(("ConfigMap", namespace, name))

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._lookup(("Secret", namespace, name))

    # --- what the node still needs -------------------------------------------------------

    def retain(self, keep: set[Key]) -> None:
        """Forget (and stop watching) every object not in `keep`."""
        with self._lock:
            gone = [k for k in self._entries if k not in keep]
            entries = [self._entries.pop(k) for k in gone]
            for k in [k for k in self._gates if k not in keep]:
                del self._gates[k]
        for e in entries:
            _stop(e)

    def cached(self) -> set[Key]:
        with self._lock:
            return set(self._entries)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            entries, self._entries = list(self._entries.values()), {}
        for e in entries:
            _stop(e)

    # --- reading and watching ------------------------------------------------------------

    def _fresh(self, key: Key) -> _Entry | None:
        with self._lock:
            e = self._entries.get(key)
            return e if e is not None and self.clock() < e.valid_until else None

    def _lookup(self, key: Key) -> Mapping[str, Any] | None:
        if (e := self._fresh(key)) is not None:
            return e.value
        with self._lock:
            gate = self._gates.setdefault(key, threading.Lock())
        # Replicas that start together ask at once: one of them reads, the rest wait for it.
        with gate:
            if (e := self._fresh(key)) is not None:
                return e.value
            return self._read(key)

    def _read(self, key: Key) -> Mapping[str, Any] | None:
        value, version = self._get(key)  # ApiException (403, 5xx) and errors reach the caller
        with self._lock:
            old = self._entries.get(key)
            if old is not None:
                _stop(old)
            entry = _Entry(value, version)
            if not self._closed:
                self._entries[key] = entry
                entry.watcher = watch.Watch()  # type: ignore[no-untyped-call]
                threading.Thread(target=self._follow, args=(key, entry), daemon=True,
                                 name=f"watch-{key[0]}-{key[2]}").start()  # fmt: skip
        return value

    def _get(self, key: Key) -> tuple[Mapping[str, Any] | None, str | None]:
        kind, namespace, name = key
        try:
            obj: Any = (
                self.core.read_namespaced_config_map(name, namespace)
                if kind == "ConfigMap"
                else self.core.read_namespaced_secret(name, namespace)
            )
        except ApiException as e:
            if e.status == 404:
                return None, None
            raise
        return contents(obj), str(obj.metadata.resource_version)

    def _current(self, key: Key, entry: _Entry) -> bool:
        with self._lock:
            return not self._closed and self._entries.get(key) is entry

    def _follow(self, key: Key, entry: _Entry) -> None:
        """Keep `entry` current until it is replaced, dropped, or its watch fails."""
        kind, namespace, name = key
        listing = (
            self.core.list_namespaced_config_map
            if kind == "ConfigMap"
            else self.core.list_namespaced_secret
        )
        w = entry.watcher
        assert w is not None
        try:
            while self._current(key, entry):
                kwargs: dict[str, Any] = {
                    "field_selector": f"metadata.name={name}",
                    "timeout_seconds": self.watch_seconds,
                    "allow_watch_bookmarks": True,
                    # A link that dies silently must not leave a stale copy trusted forever.
                    "_request_timeout": self.watch_seconds + 30,
                }
                if entry.version is not None:
                    # From what was read: nothing in between is missed. With none (the object
                    # did not exist) the watch starts with the object if it exists by now.
                    kwargs["resource_version"] = entry.version
                for event in w.stream(listing, namespace, **kwargs):  # type: ignore[no-untyped-call]
                    obj = event["object"]
                    kind_of = event["type"]
                    with self._lock:
                        if self._entries.get(key) is not entry:
                            return
                        if kind_of in ("ADDED", "MODIFIED"):
                            entry.value = contents(obj)
                        elif kind_of == "DELETED":
                            entry.value = None
                        entry.version = str(obj.metadata.resource_version)
        except Exception as e:  # 410 Gone, 403 once the grant is gone, a broken link
            if self._current(key, entry):
                log.info("watch of %s %s/%s ended (%s); re-reading it on next use after %gs",
                         kind, namespace, name, _short(e), self.retry_seconds)  # fmt: skip
                with self._lock:
                    entry.valid_until = self.clock() + self.retry_seconds


def _stop(entry: _Entry) -> None:
    """End an entry's watch now: closing its response ends the stream on its thread."""
    w = entry.watcher
    if w is None:
        return
    w.stop()  # type: ignore[no-untyped-call]
    resp = getattr(w, "_resp", None)
    if resp is not None:
        with contextlib.suppress(Exception):
            resp.close()


def _short(e: Exception) -> str:
    if isinstance(e, ApiException):
        return f"{e.status} {e.reason}"
    return f"{type(e).__name__}: {e}"
