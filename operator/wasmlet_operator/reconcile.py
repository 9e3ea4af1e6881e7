"""One level-triggered reconcile of a WasmApp: decide with pure functions, then write.

Safe to run any number of times, after any crash: it compares what should exist with what
does and changes only the difference.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from wasmlet.api.constants import ConditionType, Mode
from wasmlet.api.footprint import footprint_of
from wasmlet.api.placements import rfc3339
from wasmlet.api.revisions import revision_of, template_of
from wasmlet.api.spec import SpecError, parse_spec
from wasmlet_operator import builders
from wasmlet_operator.conditions import Condition, merge_conditions, transition_events
from wasmlet_operator.grant_writer import Grants
from wasmlet_operator.kube import Kube
from wasmlet_operator.ownership import conflict_message, with_name_conflict
from wasmlet_operator.placement import Placement, place, refused_by_quota
from wasmlet_operator.placement_specs import plan_placements
from wasmlet_operator.quota import Admission, QuotaDecision
from wasmlet_operator.quota import status_patch as quota_status_patch
from wasmlet_operator.rollout import NodeRollout, nodes_to_switch
from wasmlet_operator.state import AppKey, ClusterState
from wasmlet_operator.status import PlacementReport, Previous, aggregate, recheck_after

log = logging.getLogger("wasmlet.operator")

# (object body, type Normal|Warning, reason, message)
EventFn = Callable[[Mapping[str, Any], str, str, str], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _updated_ready(p: Mapping[str, Any]) -> int:
    """Ready instances of the placement's own revision, once the agent saw that revision."""
    status = p.get("status") or {}
    if status.get("observedGeneration") != (p.get("metadata") or {}).get("generation"):
        return 0
    return int(status.get("updatedReplicas") or 0)


@dataclass
class Reconciler:
    kube: Kube
    state: ClusterState
    event: EventFn
    grants: Grants | None = None  # None: agents' reads are not managed (unit tests)
    # Last Service/EndpointSlice written per app, so an unchanged one costs no request.
    _written: dict[tuple[AppKey, str], str] = field(default_factory=dict)

    async def reconcile(self, app: Mapping[str, Any]) -> float | None:
        """Reconcile once; the seconds until a progress deadline passes, if one runs (no
        watch event marks that moment, so the caller reconciles again then)."""
        meta = app["metadata"]
        key: AppKey = (meta["namespace"], meta["name"])
        now = _now()
        try:
            spec = parse_spec(app.get("spec") or {})
        except SpecError as e:  # the API server validates; this guards a skewed schema
            await self._write_status(
                app, {}, [Condition(ConditionType.READY, "False", "InvalidSpec", str(e))], now
            )
            return None
        existing = dict(self.state.placements.get(key, {}))
        nodes = self.state.node_views(now, exclude=key)
        ready_nodes = {n.name for n in nodes if n.ready}
        held_nodes = {n.name for n in nodes if n.held}  # autonomous, out of touch: kept
        current = {
            node: int(p["spec"].get("replicas") or 0)
            for node, p in existing.items()
            if node in ready_nodes or node in held_nodes
        }
        # Quotas first: the namespace's apps in creation order get what fits (quota.py).
        admission = await self._admit(app, key, spec.replicas)
        footprint = footprint_of(spec)
        decision = place(
            admission.allowed,
            footprint.per_instance,
            spec.node_selector,
            nodes,
            current,
            memory_per_node=footprint.per_node,
        )
        if admission.refusal is not None:
            decision = refused_by_quota(decision, spec.replicas, admission.refusal)
        revision = revision_of(app["spec"])
        template = template_of(app["spec"])
        switch = set(
            nodes_to_switch(
                [
                    NodeRollout(
                        node, decision.counts[node], p["spec"]["revision"], _updated_ready(p)
                    )
                    for node, p in existing.items()
                    if node in decision.counts
                ],
                revision,
                spec.strategy.max_unavailable,
                spec.replicas,
            )
        )
        if ready_nodes or not existing:
            await self._write_placements(
                app, key, decision, existing, revision, template, switch, now
            )
        # else: every node looks lost at once, which says more about the control plane (or
        # this operator's view of it) than about the nodes; like the node lifecycle
        # controller in a full disruption, move nothing until some node is seen again.
        conflict = None
        try:
            conflict = await self._write_service(
                app, key, spec.mode, spec.http.port if spec.http else 0, now
            )
        except ApiException as e:  # the app's status still gets written
            log.warning("service of %s/%s: %s %s", *key, e.status, (e.body or "")[:300])
            self.event(app, "Warning", "ServiceFailed", f"Service/EndpointSlice: {e.reason}")
        reports = [
            PlacementReport(
                node,
                int(p["spec"].get("replicas") or 0),
                p["spec"].get("revision", ""),
                p.get("status") or {},
                node_ready=node in ready_nodes,
                node_held=node in held_nodes,
                generation=(p.get("metadata") or {}).get("generation"),
            )
            for node, p in self.state.placements.get(key, {}).items()
        ]
        previous = Previous(app.get("status") or {}, int(meta.get("generation") or 1), now)
        status, conditions = aggregate(
            meta["name"], spec.replicas, decision, reports, spec.module.describe(), revision,
            max_unavailable=spec.strategy.max_unavailable,
            deadline_seconds=spec.progress_deadline_seconds,
            previous=previous,
        )  # fmt: skip
        if conflict is not None:
            conditions = with_name_conflict(conditions, conflict)
        if spec.http is not None:
            status["endpoints"] = sorted(
                f"{address}:{spec.http.port}"
                for r in reports
                if r.ready > 0 and (address := self.state.address_of(r.node)) is not None
            )
        await self._write_status(app, status, conditions, now)
        return recheck_after(conditions, spec.progress_deadline_seconds, now)

    async def _admit(self, app: Mapping[str, Any], key: AppKey, wanted: int) -> Admission:
        if not self.state.quotas.get(key[0]):
            return Admission(wanted)
        decision = self.state.quota_decision(key[0], app)
        await self.write_quota_status(key[0], decision)
        return decision.admission(key[1], wanted)

    async def write_quota_status(
        self, namespace: str, decision: QuotaDecision | None = None
    ) -> None:
        """status.used (and hard) of each WasmAppQuota in `namespace`, where it changed."""
        if decision is None:
            decision = self.state.quota_decision(namespace)
        for name, quota in list(self.state.quotas.get(namespace, {}).items()):
            used = decision.used.get(name)
            patch = quota_status_patch(quota, used) if used is not None else None
            if patch is None:
                continue
            updated = await self.kube.patch_quota_status(namespace, name, patch)
            if updated is not None:
                self.state.set_quota(updated)

    async def _write_placements(
        self,
        app: Mapping[str, Any],
        key: AppKey,
        decision: Placement,
        existing: dict[str, Mapping[str, Any]],
        revision: str,
        template: Mapping[str, Any],
        switch: set[str],
        now: datetime,
    ) -> None:
        ns = key[0]
        changes = plan_placements(
            decision.counts, {n: p["spec"] for n, p in existing.items()}, revision, template, switch
        )
        if self.grants is not None:  # the agent may read what a placement names first
            for node in changes.create:
                await self.grants.widen(ns, node, key[1], dict(template))
            for node, wanted in changes.update.items():
                await self.grants.widen(ns, node, key[1], dict(wanted["template"]))
        for node, count in changes.create.items():
            body = builders.build_placement(app, node, count, revision, template)
            created = await self.kube.create_placement(body)
            if created is not None:
                self.state.set_placement(created)
                self.event(app, "Normal", "Scheduled", f"placed {count} instance(s) on {node}")
        for node, wanted in changes.update.items():
            name = existing[node]["metadata"]["name"]
            updated = await self.kube.replace_placement_spec(ns, name, wanted)
            if updated is not None:
                self.state.set_placement(updated)
            if node in changes.switched:
                self.event(app, "Normal", "RollingOut", f"node {node} moves to revision {revision}")
        for node in changes.delete:
            p = existing[node]
            await self.kube.delete_placement(ns, p["metadata"]["name"])
            self.state.set_placement(p, deleted=True)
            replicas = int(p["spec"].get("replicas") or 0)
            if not self.state.node_ready(node, now) and replicas:
                self.event(
                    app,
                    "Warning",
                    "Rescheduled",
                    f"node {node} is not ready (no heartbeat); its {replicas} instance(s) "
                    "are placed on other nodes",
                )

    async def _write_service(
        self, app: Mapping[str, Any], key: AppKey, mode: Mode, port: int, now: datetime
    ) -> str | None:
        """Write the app's Service and EndpointSlice; a NameConflict message if one of their
        names belongs to an object this app does not own (that object is left as it is)."""
        ns, name = key
        uid = app["metadata"].get("uid", "")
        if mode is not Mode.HTTP:
            if (key, "service") in self._written:
                await self.kube.delete_service_objects(ns, name, uid)
                self._written.pop((key, "service"), None)
                self._written.pop((key, "slice"), None)
            return None
        endpoints = []
        for node, p in self.state.placements.get(key, {}).items():
            address = self.state.address_of(node)
            if address is None:
                continue
            # A held (autonomous, out of touch) node keeps its endpoint as last reported:
            # it most likely still serves the clients that can reach it.
            ready = (self.state.node_ready(node, now) or self.state.node_held(node, now)) and int(
                (p.get("status") or {}).get("readyReplicas") or 0
            ) > 0
            endpoints.append((node, address, ready))
        for kind, body in (
            ("service", builders.build_service(app, port)),
            ("slice", builders.build_endpoint_slice(app, port, endpoints)),
        ):
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            if self._written.get((key, kind)) == digest:
                continue
            other = await self.kube.apply_owned(body, uid)
            if other is not None:
                self._written.pop((key, kind), None)  # look again at the next reconcile
                meta = body["metadata"]
                return conflict_message(body["kind"], ns, meta["name"], other)
            self._written[(key, kind)] = digest
        return None

    async def _write_status(
        self,
        app: Mapping[str, Any],
        fields: Mapping[str, Any],
        conditions: list[Condition],
        now: datetime,
    ) -> None:
        old = app.get("status") or {}
        generation = int(app["metadata"].get("generation") or 1)
        merged = merge_conditions(old.get("conditions") or [], conditions, rfc3339(now), generation)
        status = {**fields, "observedGeneration": generation, "conditions": merged}
        meta = app["metadata"]
        if self.kube.metrics is not None:
            desired = int((app.get("spec") or {}).get("replicas") or 0)
            self.kube.metrics.set_app(meta["namespace"], meta["name"], desired, status, merged)
        if all(old.get(k) == v for k, v in status.items()):
            return
        await self.kube.patch_app_status(meta["namespace"], meta["name"], status)
        self._post_transition_events(app, old.get("conditions") or [], merged)

    def _post_transition_events(
        self,
        app: Mapping[str, Any],
        old: Sequence[Mapping[str, Any]],
        new: Sequence[Mapping[str, Any]],
    ) -> None:
        for type_, reason, message in transition_events(old, new):
            self.event(app, type_, reason, message)
