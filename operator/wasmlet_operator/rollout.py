"""Rolling a new app revision over nodes without dropping below what the spec allows.

Each node's agent replaces its own instances surge-first (new ones Ready before old ones
stop). The operator moves nodes to the new revision in steps: a node is switched only while
the instances on switched-but-not-yet-ready nodes stay within maxUnavailable. Whether the
rollout still moves, or has gone progressDeadlineSeconds without moving, is `progress`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class NodeRollout:
    """A placement's progress as the operator sees it."""

    node: str
    replicas: int
    revision: str  # the revision its spec asks for
    updated_ready: int  # ready instances of that revision (from the agent's status)


def resolve_int_or_percent(value: int | str, total: int, round_up: bool) -> int:
    """An int-or-percent (maxUnavailable) as a count, like Deployments (percent rounds down/up)."""
    if isinstance(value, int):
        return value
    pct = int(value.rstrip("%"))
    exact = total * pct / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def nodes_to_switch(
    placements: list[NodeRollout], revision: str, max_unavailable: int | str, replicas: int
) -> list[str]:
    """Nodes whose placement should move to `revision` now (possibly none)."""
    budget = max(resolve_int_or_percent(max_unavailable, replicas, round_up=False), 1)
    in_flight = sum(
        p.replicas - p.updated_ready
        for p in placements
        if p.revision == revision and p.updated_ready < p.replicas
    )
    chosen: list[str] = []
    for p in sorted(placements, key=lambda p: p.node):
        if p.revision == revision:
            continue
        if in_flight + p.replicas > budget and (in_flight > 0 or chosen):
            break
        chosen.append(p.node)
        in_flight += p.replicas
    return chosen


# --- progress: is the app getting to its spec, and for how long has it not? -----------------


class ProgressReason(StrEnum):
    """Reasons of the WasmApp's Progressing condition (a Deployment's, in wasmlet's words)."""

    COMPLETE = "RolloutComplete"  # True: every desired instance runs the current revision
    IN_PROGRESS = "RolloutInProgress"  # True: moving, and last moved within the deadline
    DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"  # False: no progress for the deadline


@dataclass(frozen=True)
class Counts:
    """What progress is measured by, as status reports it (Deployment's measure)."""

    ready: int
    updated: int  # ready instances of the current revision
    existing: int  # instances of any revision

    @property
    def outdated(self) -> int:
        """Instances not (yet) counted as updated: old ones, and new ones not ready."""
        return max(self.existing - self.updated, 0)


@dataclass(frozen=True)
class Progress:
    status: str  # "True" | "False"
    reason: ProgressReason
    since: datetime  # the last progress (or the start of this rollout): lastUpdateTime


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time from status, or None if absent or unreadable (then the clock restarts)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def progress(
    complete: bool,
    counts: Counts,
    previous_counts: Counts | None,
    previous: Mapping[str, Any] | None,
    generation: int,
    deadline_seconds: int,
    now: datetime,
) -> Progress:
    """The Progressing condition, from this reconcile's counts and what status held before.

    `previous` is the stored Progressing condition: its `lastUpdateTime` is the clock, so
    the deadline survives an operator restart. A changed spec (another observedGeneration)
    starts a new clock; so does losing convergence. Progress is more updated instances or
    fewer outdated ones; an exceeded deadline stays exceeded until there is progress again.
    """
    if complete:
        was = previous is not None and previous.get("reason") == ProgressReason.COMPLETE
        since = parse_time(previous.get("lastUpdateTime")) if was and previous else None
        return Progress("True", ProgressReason.COMPLETE, since or now)
    last = parse_time(previous.get("lastUpdateTime")) if previous else None
    reason = previous.get("reason") if previous else None
    started = (
        previous is None
        or last is None
        or reason == ProgressReason.COMPLETE
        or previous.get("observedGeneration") != generation
    )
    moved = previous_counts is None or (
        counts.updated > previous_counts.updated or counts.outdated < previous_counts.outdated
    )
    if started or moved or last is None:
        return Progress("True", ProgressReason.IN_PROGRESS, now)
    if (
        reason == ProgressReason.DEADLINE_EXCEEDED
        or (now - last).total_seconds() >= deadline_seconds
    ):
        return Progress("False", ProgressReason.DEADLINE_EXCEEDED, last)
    return Progress("True", ProgressReason.IN_PROGRESS, last)
