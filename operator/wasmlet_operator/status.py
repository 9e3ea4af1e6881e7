"""WasmApp status from what the agents report on its placements: a pure aggregation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from wasmlet.api.constants import APP_LABEL, ConditionType, NodeStatus
from wasmlet.api.placements import Reason, ready_failure, rfc3339
from wasmlet_operator.conditions import Condition
from wasmlet_operator.placement import Placement
from wasmlet_operator.rollout import (
    Counts,
    ProgressReason,
    parse_time,
    progress,
    resolve_int_or_percent,
)


@dataclass(frozen=True)
class PlacementReport:
    """One placement: what the operator asked for and what the node's agent says."""

    node: str
    replicas: int
    revision: str
    status: Mapping[str, Any]
    node_ready: bool = True
    # An autonomous node out of touch: its instances are kept but cannot be confirmed.
    node_held: bool = False

    def _count(self, key: str) -> int:
        # A node that stopped heartbeating counts as running nothing.
        return int(self.status.get(key) or 0) if self.node_ready else 0

    generation: int | None = None  # metadata.generation of the placement, when known

    @property
    def observed(self) -> bool:
        """The agent has reported on the current spec of this placement."""
        if self.generation is not None and self.status.get("observedGeneration") != self.generation:
            return False
        return bool(self.status) and self.node_ready

    @property
    def ready(self) -> int:
        # Ready instances stay ready while the agent catches up with a new spec (it replaces
        # them surge-first), so readiness does not wait for observedGeneration.
        return self._count("readyReplicas")

    @property
    def updated(self) -> int:
        return self._count("updatedReplicas") if self.observed else 0

    @property
    def existing(self) -> int:
        return self._count("replicas")

    def failure(self) -> tuple[str, str] | None:
        """(reason, message) of a condition on this placement that says something is wrong."""
        found = ready_failure(self.status.get("conditions") or [])
        if found is None:
            return None
        reason, message = found
        return reason, f"node {self.node}: {message}"


NODE_UNREACHABLE = "NodeUnreachable"


def unconfirmed(reports: Sequence[PlacementReport]) -> tuple[int, list[str]]:
    """Instances placed on held nodes, and those nodes: kept, but nobody can vouch for them."""
    held = [r for r in reports if r.node_held and r.replicas > 0]
    return sum(r.replicas for r in held), sorted(r.node for r in held)


def selector_for(app: str) -> str:
    return f"{APP_LABEL}={app}"


@dataclass(frozen=True)
class Previous:
    """The WasmApp as stored, for what status must remember across reconciles and operator
    restarts: the progress clock (in the Progressing condition) and the serving module."""

    status: Mapping[str, Any]
    generation: int
    now: datetime

    def condition(self, type_: str) -> Mapping[str, Any] | None:
        return next(
            (c for c in self.status.get("conditions") or [] if c.get("type") == type_), None
        )

    def counts(self) -> Counts | None:
        if "readyReplicas" not in self.status:
            return None
        return Counts(
            int(self.status.get("readyReplicas") or 0),
            int(self.status.get("updatedReplicas") or 0),
            int(self.status.get("replicas") or 0),
        )


FRESH = Previous({}, 1, datetime(1970, 1, 1, tzinfo=UTC))


def modules(
    reference: str,
    revision: str | None,
    reports: Sequence[PlacementReport],
    ready: int,
    updated: int,
    previous: str | None,
) -> tuple[str | None, str]:
    """(serving module, target module) for status.

    The target's digest is taken only from agents that report on the current revision (an
    agent that has not seen a switched placement yet still reports the old digest), and only
    when they agree. The serving module becomes the target once every ready instance runs
    the current revision; while old instances serve, it stays what status said, a
    reference@digest that did run together; with nothing ready, nothing serves.
    """
    digests = {
        str(d)
        for r in reports
        if r.observed and (revision is None or r.revision == revision)
        if (d := r.status.get("moduleDigest"))
    }
    target = f"{reference}@{next(iter(digests))}" if len(digests) == 1 else reference
    if ready == 0:
        return None, target
    if updated >= ready:
        return target, target
    return previous, target


def aggregate(
    app: str,
    desired: int,
    placement: Placement,
    reports: Sequence[PlacementReport],
    module: str,
    revision: str | None = None,
    *,
    max_unavailable: int | str = "25%",
    deadline_seconds: int = 600,
    previous: Previous = FRESH,
) -> tuple[dict[str, Any], list[Condition]]:
    """Status fields (without conditions) and the wanted conditions.

    `module` is the spec's module reference. Only placements already moved to `revision`
    (when given) count as updated.
    """
    ready = sum(r.ready for r in reports)
    updated = sum(
        min(r.updated, r.replicas) for r in reports if revision is None or r.revision == revision
    )
    existing = sum(r.existing for r in reports)
    serving, target = modules(
        module, revision, reports, ready, updated, previous.status.get("module")
    )
    status: dict[str, Any] = {
        "replicas": existing,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "ready": f"{ready}/{desired}",
        "module": serving,  # None removes it (a merge patch)
        "targetModule": target,
        "selector": selector_for(app),
        "placements": [
            {
                "node": r.node,
                "replicas": r.replicas,
                "readyReplicas": r.ready,
                **({"nodeStatus": NodeStatus.UNKNOWN.value} if r.node_held else {}),
            }
            for r in sorted(reports, key=lambda r: r.node)
            if r.replicas > 0 or r.ready > 0
        ],
    }
    failures = [f for r in reports if (f := r.failure()) is not None]
    conditions: list[Condition] = []
    converged = ready >= desired and updated >= desired and existing <= desired
    held, held_nodes = unconfirmed(reports)
    unreachable = (
        f"{held} instance(s) on node(s) {', '.join(held_nodes)} unconfirmed: autonomous "
        "node(s) not heartbeating; kept in place until they return"
    )
    counted = f"{ready}/{desired} instances ready"
    # Ready is about serving capacity, whichever revision serves: a stuck rollout whose old
    # instances all serve is Ready (its failure shows in Progressing and Degraded).
    if placement.unplaced and not held:
        conditions.append(
            Condition(ConditionType.READY, "False", placement.shortfall.value, placement.message)
        )
    elif held:
        conditions.append(Condition(ConditionType.READY, "False", NODE_UNREACHABLE, unreachable))
    elif ready >= desired:
        conditions.append(Condition(ConditionType.READY, "True", Reason.INSTANCES_READY, counted))
    elif failures:
        reason, message = failures[0]
        conditions.append(Condition(ConditionType.READY, "False", reason, message))
    else:
        conditions.append(Condition(ConditionType.READY, "False", "InstancesNotReady", counted))
    conditions.append(available(desired, ready, max_unavailable))
    step = progress(
        converged and not placement.unplaced,
        Counts(ready, updated, existing),
        previous.counts(),
        previous.condition(ConditionType.PROGRESSING),
        previous.generation,
        deadline_seconds,
        previous.now,
    )
    where = f"revision {revision}: " if revision else ""
    counts = f"{updated} updated, {ready} ready of {desired} desired"
    failure = f": {failures[0][1]}" if failures else ""
    message = {
        ProgressReason.COMPLETE: f"{where}{updated}/{desired} instances updated and ready",
        ProgressReason.IN_PROGRESS: f"{where}{counts}",
        ProgressReason.DEADLINE_EXCEEDED: (
            f"{where}no progress for {deadline_seconds}s (progressDeadlineSeconds) since "
            f"{rfc3339(step.since)}; {counts}{failure}"
        ),
    }[step.reason]
    conditions.append(
        Condition(ConditionType.PROGRESSING, step.status, step.reason, message, rfc3339(step.since))
    )
    if held:
        conditions.append(Condition(ConditionType.DEGRADED, "True", NODE_UNREACHABLE, unreachable))
    elif placement.unplaced:
        conditions.append(
            Condition(ConditionType.DEGRADED, "True", placement.shortfall.value, placement.message)
        )
    elif failures:
        reason, message = failures[0]
        conditions.append(Condition(ConditionType.DEGRADED, "True", reason, message))
    elif step.reason is ProgressReason.DEADLINE_EXCEEDED:
        conditions.append(
            Condition(ConditionType.DEGRADED, "True", ProgressReason.DEADLINE_EXCEEDED, message)
        )
    else:
        conditions.append(Condition(ConditionType.DEGRADED, "False", "AsExpected", ""))
    return status, conditions


class AvailableReason(StrEnum):
    AVAILABLE = "MinimumInstancesAvailable"
    UNAVAILABLE = "MinimumInstancesUnavailable"


def available(desired: int, ready: int, max_unavailable: int | str) -> Condition:
    """Available as a Deployment has it: ready instances within maxUnavailable of desired."""
    allowed = min(resolve_int_or_percent(max_unavailable, desired, round_up=False), desired)
    needed = desired - allowed
    message = (
        f"{ready}/{desired} instances ready, {needed} needed (maxUnavailable {max_unavailable})"
    )
    if ready >= needed:
        return Condition(ConditionType.AVAILABLE, "True", AvailableReason.AVAILABLE, message)
    return Condition(ConditionType.AVAILABLE, "False", AvailableReason.UNAVAILABLE, message)


def recheck_after(
    conditions: Sequence[Condition], deadline_seconds: int, now: datetime
) -> float | None:
    """Seconds until a running progress deadline passes (no watch event will say so)."""
    for c in conditions:
        if c.type == ConditionType.PROGRESSING and c.reason == ProgressReason.IN_PROGRESS:
            since = parse_time(c.last_update)
            if since is not None:
                return max(deadline_seconds - (now - since).total_seconds(), 0.0)
    return None
