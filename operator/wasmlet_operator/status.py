"""WasmApp status from what the agents report on its placements: a pure aggregation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wasmlet.api.constants import APP_LABEL, ConditionType, NodeStatus
from wasmlet.api.placements import Reason, ready_failure
from wasmlet_operator.conditions import Condition
from wasmlet_operator.placement import Placement


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


def aggregate(
    app: str,
    desired: int,
    placement: Placement,
    reports: Sequence[PlacementReport],
    module: str,
    revision: str | None = None,
) -> tuple[dict[str, Any], list[Condition]]:
    """Status fields (without conditions) and the wanted conditions.

    Only placements already moved to `revision` (when given) count as updated.
    """
    ready = sum(r.ready for r in reports)
    updated = sum(
        min(r.updated, r.replicas) for r in reports if revision is None or r.revision == revision
    )
    existing = sum(r.existing for r in reports)
    status: dict[str, Any] = {
        "replicas": existing,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "ready": f"{ready}/{desired}",
        "module": module,
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
    if placement.unplaced and not held:
        conditions.append(
            Condition(ConditionType.READY, "False", placement.shortfall.value, placement.message)
        )
    elif held:
        conditions.append(Condition(ConditionType.READY, "False", NODE_UNREACHABLE, unreachable))
    elif failures and not converged:
        reason, message = failures[0]
        conditions.append(Condition(ConditionType.READY, "False", reason, message))
    elif ready >= desired:
        msg = f"{ready}/{desired} instances ready"
        conditions.append(Condition(ConditionType.READY, "True", Reason.INSTANCES_READY, msg))
    else:
        conditions.append(
            Condition(
                ConditionType.READY,
                "False",
                "InstancesNotReady",
                f"{ready}/{desired} instances ready",
            )
        )
    if converged and not placement.unplaced:
        conditions.append(Condition(ConditionType.PROGRESSING, "False", "Converged", ""))
    else:
        conditions.append(
            Condition(
                ConditionType.PROGRESSING,
                "True",
                "RollingOut" if updated < min(ready, desired) else "Scaling",
                f"{updated} updated, {ready} ready of {desired} desired",
            )
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
    else:
        conditions.append(Condition(ConditionType.DEGRADED, "False", "AsExpected", ""))
    return status, conditions
