"""kopf wiring: watch events feed ClusterState; one daemon per WasmApp reconciles it.

Each app's daemon reconciles when woken (its placements or the nodes changed) and at least
every resync period, so a missed event only delays convergence, never prevents it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from wasmlet.api.constants import (
    GROUP,
    SYSTEM_NAMESPACE,
    VERSION,
    WASMAPPQUOTAS,
    WASMAPPS,
    WASMNODES,
    WASMPLACEMENTS,
)
from wasmlet_operator.grant_writer import Grants
from wasmlet_operator.kube import Kube
from wasmlet_operator.metrics import OperatorMetrics
from wasmlet_operator.nodes import needs_unknown, unknown_ready_patch
from wasmlet_operator.reconcile import Reconciler
from wasmlet_operator.state import ClusterState

log = logging.getLogger("wasmlet.operator")
REPORTING_COMPONENT = "wasmlet-operator"


def _post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    ref: Any = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WasmApp", "metadata": body["metadata"]}
    kopf.event(
        ref,
        type=type_,
        reason=reason,
        message=message,
    )


def configure_settings(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = f"{GROUP}/cleanup"
    settings.posting.level = logging.WARNING  # kopf's own handler chatter stays out of Events
    # Events say who posted them (`kubectl describe`'s From column), as the kubelet's do.
    settings.posting.reporting_component = REPORTING_COMPONENT
    settings.posting.reporting_instance = os.environ.get("POD_NAME") or socket.gethostname()
    settings.posting.event_name_prefix = "wasmlet-"


def build_registry(
    kube: Kube, state: ClusterState, resync_seconds: float = 30.0, grants: Grants | None = None
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    reconciler = Reconciler(kube, state, _post_event, grants=grants)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_settings(settings)
        settings.watching.server_timeout = 60
        settings.watching.connect_timeout = 5
        settings.networking.request_timeout = 30
        # kopf keeps an object's worker (and its slot) for idle_timeout after its last event:
        # with 64 slots held 5 s each, a burst of new apps was admitted at ~13 per second.
        # Workers are asyncio tasks; a short idle time keeps them few without a cap.
        settings.batching.worker_limit = None
        settings.batching.idle_timeout = 0.5

    @kopf.on.event(GROUP, VERSION, WASMAPPS, registry=registry)
    async def on_app(
        type: str | None, namespace: str | None, name: str | None, body: kopf.Body, **_: Any
    ) -> None:
        # A changed spec (kubectl scale, apply) reconciles now, not at the next resync.
        if type != "DELETED" and name:
            state.wake((namespace or "", name))
        # Under a quota, an app scaled, resized or deleted changes what the others may place.
        if state.set_app(body, deleted=type == "DELETED") and state.quotas.get(namespace or ""):
            state.wake_namespace(namespace or "")
            await _quota_status(namespace or "")

    @kopf.on.event(GROUP, VERSION, WASMAPPQUOTAS, registry=registry)
    async def on_quota(type: str | None, body: kopf.Body, **_: Any) -> None:
        namespace = state.set_quota(body, deleted=type == "DELETED")
        state.wake_namespace(namespace)
        if type != "DELETED":
            await _quota_status(namespace)

    async def _quota_status(namespace: str) -> None:
        try:
            await reconciler.write_quota_status(namespace)
        except ApiException as e:  # the next app reconcile in the namespace writes it again
            log.warning("quota status in %s: %s %s", namespace, e.status, e.reason)

    @kopf.on.event(GROUP, VERSION, WASMPLACEMENTS, registry=registry)
    def on_placement(type: str | None, body: kopf.Body, **_: Any) -> None:
        key = state.set_placement(body, deleted=type == "DELETED")
        state.wake(key)
        if grants is not None:  # what its node's agent may read follows the placement
            grants.mark(key[0], str((body.get("spec") or {}).get("node") or ""), key[1])

    @kopf.on.event(GROUP, VERSION, WASMNODES, registry=registry)
    def on_node(type: str | None, body: kopf.Body, **_: Any) -> None:
        # Agents patch their WasmNode often (instance counts); only what placement reads
        # wakes every app.
        if state.set_node(body, deleted=type == "DELETED"):
            state.wake_all()
        if grants is not None and type != "DELETED":
            grants.node_seen(body["metadata"]["name"])

    @kopf.on.event(
        "coordination.k8s.io",
        "v1",
        "leases",
        registry=registry,
        when=lambda namespace, **_: namespace == SYSTEM_NAMESPACE,
    )
    def on_lease(type: str | None, name: str, spec: kopf.Spec, **_: Any) -> None:
        before = state.node_ready(name, datetime.now(UTC))
        state.set_lease(name, None if type == "DELETED" else dict(spec))
        if state.node_ready(name, datetime.now(UTC)) != before:
            state.wake_all()

    @kopf.daemon(GROUP, VERSION, WASMAPPS, registry=registry, cancellation_timeout=5.0, backoff=1.0)
    async def run_app(
        namespace: str | None, name: str, body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any
    ) -> None:
        key = (namespace or "", name)
        wake = state.wakeup(key)
        try:
            while not stopped:
                wake.clear()
                if body.metadata.get("deletionTimestamp"):
                    return
                try:
                    t0 = time.perf_counter()
                    # A snapshot: kopf updates `body` in place as events arrive, and the
                    # reconcile hands parts of it to API calls running on other threads.
                    deadline_in = await reconciler.reconcile(copy.deepcopy(dict(body)))
                    if kube.metrics is not None:
                        kube.metrics.reconciles.inc()
                        kube.metrics.reconcile_duration.observe(time.perf_counter() - t0)
                except ApiException as e:
                    if kube.metrics is not None:
                        kube.metrics.reconcile_errors.labels(reason=str(e.reason or e.status)).inc()
                    log.warning(
                        "reconcile %s/%s failed: %s %s: %s",
                        namespace, name, e.status, e.reason, (e.body or "")[:600],
                    )  # fmt: skip
                    await asyncio.sleep(1)
                    continue
                except Exception as e:  # e.g. the API server is restarting: retry soon
                    if kube.metrics is not None:
                        kube.metrics.reconcile_errors.labels(reason=type(e).__name__).inc()
                    log.warning("reconcile %s/%s failed: %s", namespace, name, e)
                    await asyncio.sleep(1)
                    continue
                # Also wake when a rollout's progress deadline passes: nothing else would.
                timeout = (
                    resync_seconds
                    if deadline_in is None
                    else min(resync_seconds, deadline_in + 0.5)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=timeout)
                await asyncio.sleep(0.05)  # coalesce bursts of events into one reconcile
        finally:
            if stopped:
                state.forget_app(key)

    @kopf.on.delete(GROUP, VERSION, WASMAPPS, registry=registry)
    async def cleanup(namespace: str | None, name: str, uid: str | None, **_: Any) -> None:
        namespace = namespace or ""
        key = (namespace, name)
        for p in list(state.placements.get(key, {}).values()):
            await kube.delete_placement(namespace, p["metadata"]["name"])
            state.set_placement(p, deleted=True)
        # Only objects this app owns; a same-named Service of someone else's stays.
        await kube.delete_service_objects(namespace, name, uid or "")
        state.forget_app(key)
        if kube.metrics is not None:
            kube.metrics.forget_app(namespace, name)

    return registry


async def watch_heartbeats(
    state: ClusterState,
    period: float = 1.0,
    metrics: OperatorMetrics | None = None,
    kube: Kube | None = None,
) -> None:
    """Lease expiry produces no watch event, so look at the clock (kopf timers would put
    finalizers on WasmNodes, which only their agents may write). With `kube`, a node whose
    heartbeat is stale gets Ready=Unknown in its status, the one field the operator writes
    on a WasmNode (as the node lifecycle controller does for Nodes)."""
    while True:
        changed = state.refresh_readiness(datetime.now(UTC))
        for node, ready in changed:
            log.info("node %s is %s", node, "ready" if ready else "not ready (no heartbeat)")
        if changed:
            state.wake_all()
        if kube is not None:
            now = datetime.now(UTC)
            for name, body in list(state.nodes.items()):
                if needs_unknown(body, state.node_ready(name, now)):
                    try:
                        await kube.patch_node_status(name, unknown_ready_patch(now, state.grace))
                    except ApiException as e:
                        log.warning("node %s: cannot set Ready=Unknown: %s", name, e.reason)
        if metrics is not None:
            now = datetime.now(UTC)
            metrics.set_nodes({n: state.node_ready(n, now) for n in state.nodes})
            metrics.apps.set(state.app_count())
        await asyncio.sleep(period)
