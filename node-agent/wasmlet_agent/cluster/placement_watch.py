"""This node's WasmPlacements: listed and watched (a field selector on spec.node), kept in a
store, and turned into the desired apps the agent runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from wasmlet.api.constants import GROUP, VERSION, WASMPLACEMENTS
from wasmlet.api.spec import SpecError, WasmAppSpec, parse_spec
from wasmlet_agent.apps import DesiredApp

log = logging.getLogger("wasmlet.agent.node")

PlacementKey = tuple[str, str]  # (namespace, placement name)


class ParsedTemplates:
    """Each placement's parsed template, reused while its generation is unchanged.

    The apply loop turns every placement into a DesiredApp on each batch of watch events;
    parsing was most of that, which made starting N apps cost O(N^2). A placement without
    uid and generation (hand-made in tests) is parsed every time.
    """

    def __init__(self) -> None:
        self._parsed: dict[PlacementKey, tuple[tuple[str, int], WasmAppSpec]] = {}

    def parse(self, key: PlacementKey, placement: Mapping[str, Any]) -> WasmAppSpec:
        """The template as a spec; raises SpecError like parse_spec."""
        meta = placement["metadata"]
        uid, generation = meta.get("uid"), meta.get("generation")
        template = placement["spec"].get("template") or {}
        if uid is None or generation is None:
            return parse_spec(template)
        hit = self._parsed.get(key)
        if hit is not None and hit[0] == (uid, generation):
            return hit[1]
        parsed = parse_spec(template)
        self._parsed[key] = ((uid, generation), parsed)
        return parsed

    def retain(self, keys: Iterable[PlacementKey]) -> None:
        keep = set(keys)
        for key in [k for k in self._parsed if k not in keep]:
            del self._parsed[key]


def desired_apps(
    placements: Mapping[PlacementKey, Mapping[str, Any]], parsed: ParsedTemplates | None = None
) -> list[DesiredApp]:
    """What the placements ask this node to run. Placements being deleted ask for nothing; a
    template the agent cannot parse (a skewed schema) is logged and skipped."""
    templates = parsed or ParsedTemplates()
    out = []
    for (ns, name), p in sorted(placements.items()):
        if p["metadata"].get("deletionTimestamp"):
            continue
        spec = p["spec"]
        try:
            app_spec = templates.parse((ns, name), p)
        except SpecError as e:
            log.error("placement %s/%s has a bad template: %s", ns, name, e)
            continue
        out.append(DesiredApp((ns, spec["app"]), spec["revision"], app_spec, int(spec["replicas"])))
    templates.retain(placements)
    return out


def desired_signature(placements: Mapping[PlacementKey, Mapping[str, Any]]) -> frozenset[Any]:
    """What desired_apps depends on (pure): equal signatures give equal desired apps, so a
    batch of watch events that only changed statuses needs no apply."""
    out = []
    for key, p in placements.items():
        meta = p["metadata"]
        generation = meta.get("generation")
        spec = p["spec"] if generation is None else None  # no generation: the spec itself
        out.append((key, meta.get("uid"), generation, bool(meta.get("deletionTimestamp")),
                    repr(spec) if spec is not None else None))  # fmt: skip
    return frozenset(out)


class Placements:
    """The placements of this node as last seen (thread-safe; readers get copies)."""

    def __init__(self) -> None:
        self._items: dict[PlacementKey, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def replace_all(self, items: dict[PlacementKey, dict[str, Any]]) -> None:
        with self._lock:
            self._items = dict(items)

    def put(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self._items[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    def delete(self, key: PlacementKey) -> None:
        with self._lock:
            self._items.pop(key, None)

    def set_status(self, key: PlacementKey, status: Mapping[str, Any]) -> None:
        """What was written, so the next status keeps its transition times."""
        with self._lock:
            if key in self._items:
                self._items[key] = {**self._items[key], "status": dict(status)}

    def snapshot(self) -> dict[PlacementKey, dict[str, Any]]:
        with self._lock:
            return dict(self._items)

    def owner_uid(self, namespace: str, app: str) -> str | None:
        """The uid of the WasmApp a placement of `app` belongs to (for Events)."""
        with self._lock:
            for (ns, _), p in self._items.items():
                if ns == namespace and p["spec"].get("app") == app:
                    owners = p["metadata"].get("ownerReferences") or []
                    return str(owners[0].get("uid")) if owners else None
        return None


class PlacementWatch:
    """List+watch on a thread (the client is synchronous); `on_change` after every change."""

    def __init__(
        self,
        node: str,
        api: client.ApiClient,
        store: Placements,
        on_change: Callable[[], None],
        on_listed: Callable[[], None] = lambda: None,
    ) -> None:
        self.node, self.store, self.on_change = node, store, on_change
        self.on_listed = on_listed  # after each full list: the API's set replaced the store
        self.custom = client.CustomObjectsApi(api)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="placement-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        selector = f"spec.node={self.node}"
        while not self._stop.is_set():
            try:
                listing: Any = self.custom.list_cluster_custom_object(
                    GROUP, VERSION, WASMPLACEMENTS, field_selector=selector
                )
                self.store.replace_all(
                    {
                        (o["metadata"]["namespace"], o["metadata"]["name"]): o
                        for o in listing.get("items", [])
                    }
                )
                self.on_listed()
                self.on_change()
                w = watch.Watch()  # type: ignore[no-untyped-call]
                for ev in w.stream(  # type: ignore[no-untyped-call]
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    WASMPLACEMENTS,
                    field_selector=selector,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                ):
                    if self._stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
                        break
                    obj = ev["object"]
                    if ev["type"] == "DELETED":
                        self.store.delete((obj["metadata"]["namespace"], obj["metadata"]["name"]))
                    elif ev["type"] in ("ADDED", "MODIFIED"):
                        self.store.put(obj)
                    else:
                        continue
                    self.on_change()
            except ApiException as e:
                if e.status != 410:  # 410 Gone: resourceVersion too old, re-list
                    log.warning("watching placements failed: %s %s", e.status, e.reason)
                    self._stop.wait(1)
            except Exception as e:  # connection resets while the API server restarts
                log.warning("watching placements failed: %s", e)
                self._stop.wait(1)
