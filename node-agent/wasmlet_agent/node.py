"""Cluster mode: this agent as a wasmlet node under the operator.

It registers its WasmNode, renews its heartbeat Lease (like the kubelet's node lease),
watches the WasmPlacements for its node only (a field selector), runs what they ask for,
and writes their status. Those are the only objects it writes; the API server's admission
policy (deploy/30-agent-node-policy.yaml) holds it to its own node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from wasmlet.api.constants import (
    GROUP,
    SYSTEM_NAMESPACE,
    VERSION,
    WASMNODES,
    WASMPLACEMENTS,
)
from wasmlet.api.spec import SpecError, parse_spec
from wasmlet.clients import api_client
from wasmlet_agent.agent import AppReport, DesiredApp
from wasmlet_agent.runner import NodeRunner, RunnerConfig
from wasmlet_agent.runtime.engine import wasmtime_version
from wasmlet_agent.supervisor import AppKey

log = logging.getLogger("wasmlet.agent.node")
AGENT_VERSION = "0.1.0"
STATUS_WRITERS = 4


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> datetime:
    return datetime.now(UTC)


class ApiLookup:
    """ConfigMaps and Secrets read from the API server when an instance starts."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core

    def _get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            obj: Any = (
                self.core.read_namespaced_config_map(name, namespace)
                if kind == "ConfigMap"
                else self.core.read_namespaced_secret(name, namespace)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {"data": obj.data or {}, "binaryData": getattr(obj, "binary_data", None) or {}}

    def config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get("ConfigMap", namespace, name)

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get("Secret", namespace, name)


def placement_status(
    placement: Mapping[str, Any], rep: AppReport | None, now: str
) -> dict[str, Any]:
    """The status this agent reports on a placement (pure; tested without a cluster)."""
    generation = int(placement["metadata"].get("generation") or 1)
    desired = int(placement["spec"].get("replicas") or 0)
    old = {c.get("type"): c for c in (placement.get("status") or {}).get("conditions") or []}
    if rep is None:
        replicas = ready = updated = 0
        digest, instances, problem = None, [], None
    else:
        replicas, ready, updated = rep.replicas, rep.ready, rep.updated
        digest, problem = rep.digest, rep.problem
        instances = [
            {
                "name": s.name,
                "revision": s.revision,
                "state": s.state.value,
                "ready": s.ready,
                "restarts": s.restarts,
                **({"exitCode": s.exit_code} if s.exit_code is not None else {}),
                **({"reason": s.reason} if s.reason else {}),
                **({"message": s.message[:1024]} if s.message else {}),
                **(
                    {
                        "startedAt": datetime.fromtimestamp(s.started_at, UTC).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        )
                    }
                    if s.started_at
                    else {}
                ),
            }
            for s in rep.instances
        ]
    if desired == 0:
        cond = ("True", "ScaledToZero", "no instances wanted")
    elif updated >= desired:
        cond = ("True", "InstancesReady", f"{updated}/{desired} instances ready")
    elif problem is not None:
        cond = ("False", problem[0], problem[1][:1024])
    else:
        cond = ("False", "Starting", f"{updated}/{desired} instances ready")
    prev = old.get("Ready")
    since = prev.get("lastTransitionTime", now) if prev and prev.get("status") == cond[0] else now
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "instances": instances,
        "conditions": [
            {
                "type": "Ready",
                "status": cond[0],
                "reason": cond[1],
                "message": cond[2],
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        ],
    }
    if digest:
        status["moduleDigest"] = digest
    return status


class NodeAgent:
    def __init__(self, args: argparse.Namespace, runner: NodeRunner, api: client.ApiClient):
        self.args, self.runner, self.api = args, runner, api
        self.node = runner.config.node
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.placements: dict[tuple[str, str], dict[str, Any]] = {}  # (ns, name) -> object
        self._written: dict[tuple[str, str], dict[str, Any]] = {}
        self._events_seen: dict[tuple[AppKey, str, str], float] = {}
        self._changed = asyncio.Event()
        self._stop = threading.Event()
        self._writers = ThreadPoolExecutor(STATUS_WRITERS, thread_name_prefix="status")
        self.events = ThreadPoolExecutor(1, thread_name_prefix="events")

    # --- registration and heartbeat -----------------------------------------------------

    def _labels(self) -> dict[str, str]:
        labels = {"wasmlet.dev/node": self.node}
        for item in filter(None, self.args.labels.split(",")):
            k, _, v = item.partition("=")
            labels[k.strip()] = v.strip()
        return labels

    def register(self) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WasmNode",
            "metadata": {"name": self.node, "labels": self._labels()},
        }
        try:
            self.custom.create_cluster_custom_object(GROUP, VERSION, WASMNODES, body)
        except ApiException as e:
            if e.status != 409:
                raise
            self.custom.patch_cluster_custom_object(
                GROUP, VERSION, WASMNODES, self.node, {"metadata": {"labels": self._labels()}}
            )
        self._patch_node_status()

    def _patch_node_status(self) -> None:
        instances = sum(r.replicas for r in self.runner.reports().values())
        status = {
            "address": self.runner.config.address,
            "agentPort": self.runner.api_port,
            "capacity": {
                "instances": self.args.capacity_instances,
                "memory": self.args.capacity_memory,
            },
            "instances": instances,
            "nodeInfo": {"agentVersion": AGENT_VERSION, "wasmtimeVersion": wasmtime_version()},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "AgentReady",
                    "message": "agent is running and heartbeating",
                    "lastTransitionTime": _now(),
                }
            ],
        }
        self.custom.patch_cluster_custom_object_status(
            GROUP, VERSION, WASMNODES, self.node, {"status": status}
        )

    def heartbeat(self) -> None:
        now = _micro_now()
        try:
            lease = self.coordination.read_namespaced_lease(self.node, SYSTEM_NAMESPACE)
        except ApiException as e:
            if e.status != 404:
                raise
            self.coordination.create_namespaced_lease(
                SYSTEM_NAMESPACE,
                client.V1Lease(
                    metadata=client.V1ObjectMeta(name=self.node, namespace=SYSTEM_NAMESPACE),
                    spec=client.V1LeaseSpec(
                        holder_identity=self.node,
                        lease_duration_seconds=self.args.lease_seconds,
                        acquire_time=now,
                        renew_time=now,
                    ),
                ),
            )
            return
        assert lease.spec is not None
        lease.spec.renew_time = now
        lease.spec.holder_identity = self.node
        lease.spec.lease_duration_seconds = self.args.lease_seconds
        self.coordination.replace_namespaced_lease(self.node, SYSTEM_NAMESPACE, lease)

    def heartbeat_loop(self) -> None:
        """Renew the Lease on a thread of its own, like the kubelet's node lease: a busy
        event loop or a queue of status writes must never delay it."""
        last_status = 0.0
        while not self._stop.is_set():
            try:
                self.heartbeat()
                if time.monotonic() - last_status > 10:
                    self._patch_node_status()
                    last_status = time.monotonic()
                self.runner.ready = True
            except Exception as e:  # API or connection errors (e.g. the API server restarts)
                log.warning("heartbeat failed: %s", e)
            self._stop.wait(self.args.heartbeat_seconds)

    # --- placements -----------------------------------------------------------------------

    def _watch_placements(self, loop: asyncio.AbstractEventLoop) -> None:
        """List+watch this node's placements (a thread: the client is synchronous)."""
        selector = f"spec.node={self.node}"
        while not self._stop.is_set():
            try:
                listing: Any = self.custom.list_cluster_custom_object(
                    GROUP, VERSION, WASMPLACEMENTS, field_selector=selector
                )
                items = {
                    (o["metadata"]["namespace"], o["metadata"]["name"]): o
                    for o in listing.get("items", [])
                }
                loop.call_soon_threadsafe(self._replace_all, items)
                rv = listing["metadata"]["resourceVersion"]
                w = watch.Watch()  # type: ignore[no-untyped-call]
                for ev in w.stream(  # type: ignore[no-untyped-call]
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    WASMPLACEMENTS,
                    field_selector=selector,
                    resource_version=rv,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                ):
                    if self._stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
                        break
                    if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        loop.call_soon_threadsafe(self._on_event, ev["type"], ev["object"])
            except ApiException as e:
                if e.status != 410:  # 410 Gone: resourceVersion too old, re-list
                    log.warning("watching placements failed: %s %s", e.status, e.reason)
                    self._stop.wait(1)
            except Exception as e:  # connection resets while the API server restarts
                log.warning("watching placements failed: %s", e)
                self._stop.wait(1)

    def _replace_all(self, items: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.placements = items
        self._changed.set()

    def _on_event(self, type_: str, obj: dict[str, Any]) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if type_ == "DELETED":
            self.placements.pop(key, None)
            self._written.pop(key, None)
        else:
            self.placements[key] = obj
        self._changed.set()

    def desired(self) -> list[DesiredApp]:
        out = []
        for (ns, _name), p in sorted(self.placements.items()):
            spec = p["spec"]
            if p["metadata"].get("deletionTimestamp"):
                continue
            try:
                parsed = parse_spec(spec.get("template") or {})
            except SpecError as e:
                log.error("placement %s/%s has a bad template: %s", ns, _name, e)
                continue
            out.append(
                DesiredApp((ns, spec["app"]), spec["revision"], parsed, int(spec["replicas"]))
            )
        return out

    async def apply_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self.runner.apply(self.desired())
            await asyncio.sleep(0.02)

    # --- status and events ----------------------------------------------------------------

    async def write_statuses(self, reports: dict[AppKey, AppReport]) -> None:
        now = _now()
        writes = []
        for key, p in list(self.placements.items()):
            rep = reports.get((key[0], p["spec"]["app"]))
            status = placement_status(p, rep, now)
            last = self._written.get(key)
            if last is not None and _same(last, status):
                continue
            writes.append(self._write_status(key, status))
        # A few at a time, on the agent's own writer threads.
        for start in range(0, len(writes), STATUS_WRITERS):
            await asyncio.gather(*writes[start : start + STATUS_WRITERS])

    async def _write_status(self, key: tuple[str, str], status: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        try:
            updated: Any = await loop.run_in_executor(
                self._writers,
                lambda: self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, key[0], WASMPLACEMENTS, key[1], {"status": status}
                ),
            )
            self._written[key] = status
            if key in self.placements:
                self.placements[key]["status"] = updated.get("status", status)
        except ApiException as e:
            if e.status != 404:
                log.warning("status of placement %s/%s: %s %s", *key, e.status, e.reason)
        except Exception as e:  # connection errors: the next report retries
            log.warning("status of placement %s/%s: %s", *key, e)

    def post_event(self, key: AppKey, type_: str, reason: str, message: str) -> None:
        """An Event on the WasmApp (what `kubectl describe wasmapp` shows); deduplicated."""
        dedupe = (key, reason, message)
        now = time.monotonic()
        if now - self._events_seen.get(dedupe, -1e9) < 60:
            return
        self._events_seen[dedupe] = now
        uid = None
        for p in self.placements.values():
            if (p["metadata"]["namespace"], p["spec"]["app"]) == key:
                owners = p["metadata"].get("ownerReferences") or []
                uid = owners[0].get("uid") if owners else None
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{key[1]}.{uuid.uuid4().hex[:12]}", namespace=key[0]
            ),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="WasmApp",
                name=key[1],
                namespace=key[0],
                uid=uid,
            ),
            reason=reason,
            message=f"{self.node}: {message}"[:1024],
            type=type_,
            source=client.V1EventSource(component="wasmlet-agent", host=self.node),
            first_timestamp=_micro_now(),
            last_timestamp=_micro_now(),
            count=1,
            reporting_component="wasmlet.dev/agent",
            reporting_instance=self.node,
        )
        try:
            self.core.create_namespaced_event(key[0], body)
        except Exception as e:  # events are best effort
            log.debug("event %s: %s", reason, e)


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal apart from condition transition times."""

    def strip(s: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(s)
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in s.get("conditions") or []
        ]
        return out

    return strip(a) == strip(b)


async def run_node(args: argparse.Namespace, cfg: RunnerConfig) -> int:
    api = api_client(args.kubeconfig)
    lookup = ApiLookup(client.CoreV1Api(api))
    holder: list[NodeAgent] = []

    def event(key: AppKey, type_: str, reason: str, message: str) -> None:
        if holder:  # posted in order on a thread of their own, never blocking an instance
            holder[0].events.submit(holder[0].post_event, key, type_, reason, message)

    runner = NodeRunner(cfg, lookup, event=event)
    await runner.start()
    node = NodeAgent(args, runner, api)
    holder.append(node)
    for attempt in range(60):
        try:
            await asyncio.to_thread(node.register)
            break
        except Exception as e:
            log.warning("registering node %s failed (attempt %d): %s", cfg.node, attempt + 1, e)
            await asyncio.sleep(1)
    else:
        await runner.shutdown()
        return 1
    runner.on_reports(node.write_statuses)
    loop = asyncio.get_running_loop()
    watcher = threading.Thread(target=node._watch_placements, args=(loop,), daemon=True)
    watcher.start()
    heart = threading.Thread(target=node.heartbeat_loop, name="heartbeat", daemon=True)
    heart.start()
    tasks = [asyncio.create_task(node.apply_loop())]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("node %s joined; agent API on port %d", cfg.node, runner.api_port)
    await stop.wait()
    log.info("node %s stopping", cfg.node)
    node._stop.set()
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    await runner.shutdown()
    return 0
