"""The placement-status contract: what an agent writes on a WasmPlacement, and the operator reads.

One definition of the instance states and reasons both sides spell, of the rule for a
condition's lastTransitionTime (also used for WasmApp conditions), and of the pure
`placement_status` that turns an agent's report into the object it writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from wasmlet.api.constants import ConditionStatus, ConditionType

# Kubernetes caps condition messages; so does the agent, for every free text it reports.
MAX_MESSAGE = 1024


class InstanceState(StrEnum):
    """Where an instance is in its lifecycle (legal moves: the agent's lifecycle module)."""

    PULLING = "Pulling"
    COMPILING = "Compiling"
    STARTING = "Starting"
    RUNNING = "Running"
    EXITED = "Exited"
    TRAPPED = "Trapped"
    BACK_OFF = "BackOff"
    COMPLETED = "Completed"  # ended successfully and will not be started again
    FAILED = "Failed"  # will not be started again (restartPolicy, or a permanent error)
    STOPPED = "Stopped"  # stopped by the agent (scale down, delete, shutdown)


class Reason(StrEnum):
    """Every reason an agent puts in placement status (conditions and instances) or Events.

    CamelCase, as Kubernetes condition reasons are. The operator copies a failing
    placement's reason into the WasmApp's Ready and Degraded conditions.
    """

    # The placement's Ready condition while nothing is wrong.
    INSTANCES_READY = "InstancesReady"
    SCALED_TO_ZERO = "ScaledToZero"
    STARTING = "Starting"
    # Getting the module (also raised by the module sources).
    SOURCE_UNREACHABLE = "SourceUnreachable"
    MODULE_NOT_FOUND = "ModuleNotFound"
    UNAUTHORIZED = "Unauthorized"
    DIGEST_MISMATCH = "DigestMismatch"
    NOT_WASM = "NotWasm"
    MODULE_TOO_LARGE = "ModuleTooLarge"
    NO_WASM_LAYER = "NoWasmLayer"
    INVALID_SOURCE = "InvalidSource"
    INVALID_DIGEST = "InvalidDigest"
    TLS_ERROR = "TLSError"
    SOURCE_SERVER_ERROR = "SourceServerError"
    UNSUPPORTED_FORMAT = "UnsupportedFormat"
    INVALID_MODULE = "InvalidModule"
    # How a run ended.
    COMPLETED = "Completed"
    ERROR = "Error"  # exited with a non-zero code
    TRAPPED = "Trapped"
    TIMED_OUT = "TimedOut"
    OUT_OF_MEMORY = "OutOfMemory"
    OUT_OF_FUEL = "OutOfFuel"
    EPHEMERAL_STORAGE = "EphemeralStorageExceeded"  # an emptyDir outgrew its sizeLimit
    STOPPED = "Stopped"
    # The node's side.
    CONFIG_ERROR = "ConfigError"  # a referenced ConfigMap or Secret is missing or wrong
    HOST_PATH_FORBIDDEN = "HostPathForbidden"  # a hostPath this node refuses to preopen
    PORT_CONFLICT = "PortConflict"
    # Running, but spec.http.readinessCheck has not passed (yet, or any more).
    READINESS_CHECK_FAILED = "ReadinessCheckFailed"
    # The node's memory (--capacity-memory) cannot hold the placement (wasmlet.api.footprint).
    INSUFFICIENT_MEMORY = "InsufficientMemory"
    AGENT_ERROR = "AgentError"  # something unexpected in the agent; retried with back-off
    # Events only.
    PULLED = "Pulled"
    STARTED = "Started"
    SERVING_PROCESS_RESTARTED = "ServingProcessRestarted"  # an HTTP serving process ended


# Ready=False reasons that mean "on its way", not "something is wrong".
PROGRESS_REASONS = frozenset({Reason.STARTING, Reason.SCALED_TO_ZERO, Reason.INSTANCES_READY})


def is_failure(reason: str) -> bool:
    """True if a Ready=False condition with this reason reports a problem to surface."""
    return bool(reason) and reason not in PROGRESS_REASONS


@dataclass
class InstanceStatus:
    """What the agent reports of one instance (a plain record, copied to readers)."""

    name: str
    revision: str
    state: InstanceState = InstanceState.PULLING
    restarts: int = 0
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    started_at: float | None = None  # unix time of the current run's start
    memory_bytes: int = 0
    # False while a readiness check holds a running instance out of service (HTTP mode):
    # it still serves requests that reach its node, but counts as not ready.
    check_passed: bool = True

    @property
    def ready(self) -> bool:
        # A run that completed successfully did what was asked of it.
        if self.state is InstanceState.COMPLETED:
            return True
        return self.state is InstanceState.RUNNING and self.check_passed


@dataclass
class AppReport:
    """What one node runs of one app: the input of `placement_status` and the agent API."""

    key: tuple[str, str]  # (namespace, app)
    revision: str  # the desired revision
    desired: int
    replicas: int = 0
    ready: int = 0
    updated: int = 0  # ready instances of the desired revision
    digest: str | None = None
    instances: list[InstanceStatus] = field(default_factory=list)
    problem: tuple[str, str] | None = None  # (reason, message) when something is wrong
    # Live linear memory of the running instances (HTTP mode: of the requests in flight).
    memory_bytes: int = 0


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def transition_time(previous: Mapping[str, Any] | None, status: str, now: str) -> str:
    """lastTransitionTime per the API conventions: kept while the status stays the same."""
    if previous is not None and previous.get("status") == status:
        return str(previous.get("lastTransitionTime") or now)
    return now


def ready_condition(desired: int, updated: int, problem: tuple[str, str] | None) -> tuple[
    ConditionStatus, Reason | str, str
]:  # fmt: skip
    """(status, reason, message) of a placement's Ready condition."""
    if desired == 0:
        return ConditionStatus.TRUE, Reason.SCALED_TO_ZERO, "no instances wanted"
    if updated >= desired:
        return ConditionStatus.TRUE, Reason.INSTANCES_READY, f"{updated}/{desired} instances ready"
    if problem is not None:
        return ConditionStatus.FALSE, problem[0], problem[1][:MAX_MESSAGE]
    return ConditionStatus.FALSE, Reason.STARTING, f"{updated}/{desired} instances ready"


def _instance_json(s: InstanceStatus) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": s.name,
        "revision": s.revision,
        "state": s.state.value,
        "ready": s.ready,
        "restarts": s.restarts,
    }
    if s.exit_code is not None:
        out["exitCode"] = s.exit_code
    if s.reason:
        out["reason"] = s.reason
    if s.message:
        out["message"] = s.message[:MAX_MESSAGE]
    if s.started_at:
        out["startedAt"] = rfc3339(datetime.fromtimestamp(s.started_at, UTC))
    return out


def placement_status(
    placement: Mapping[str, Any], report: AppReport | None, now: str
) -> dict[str, Any]:
    """The status an agent writes on `placement` given what it runs (`None`: nothing yet)."""
    generation = int(placement["metadata"].get("generation") or 1)
    desired = int(placement["spec"].get("replicas") or 0)
    old = {c.get("type"): c for c in (placement.get("status") or {}).get("conditions") or []}
    rep = report or AppReport(("", ""), "", desired)
    wanted = placement["spec"].get("revision")
    if wanted and rep.revision and rep.revision != wanted:
        # A report taken before the agent took this spec in (the first moment of a
        # rollout) counts the previous revision: under this generation, none of its
        # instances is updated and its digest is not this revision's module.
        rep = dataclasses.replace(rep, updated=0, digest=None)
    status, reason, message = ready_condition(desired, rep.updated, rep.problem)
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": rep.replicas,
        "readyReplicas": rep.ready,
        "updatedReplicas": rep.updated,
        "instances": [_instance_json(s) for s in rep.instances],
        "conditions": [
            {
                "type": ConditionType.READY.value,
                "status": status.value,
                "reason": str(reason),
                "message": message,
                "lastTransitionTime": transition_time(old.get(ConditionType.READY), status, now),
                "observedGeneration": generation,
            }
        ],
        # This revision's module digest; null until it is known. Agents write status with a
        # merge patch, where an absent key would leave the previous revision's digest in place.
        "moduleDigest": rep.digest or None,
    }
    return out


def same_status(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal apart from condition transition times (no write needed)."""

    def strip(s: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(s)
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in s.get("conditions") or []
        ]
        return out

    return strip(a) == strip(b)


def ready_failure(conditions: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of a Ready=False condition that reports a problem, else None."""
    for c in conditions:
        if c.get("type") == ConditionType.READY and c.get("status") == ConditionStatus.FALSE:
            reason = str(c.get("reason") or "")
            if is_failure(reason):
                return reason, str(c.get("message") or reason)
    return None
