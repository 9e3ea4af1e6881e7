"""Per-namespace quotas (WasmAppQuota): how many replicas each app of a namespace may place.

A pure decision over the namespace's apps and its quota objects. Apps are served first come,
first served (creationTimestamp, then name), so the answer is deterministic and an older app
never loses replicas to a newer one. Like a ReplicaSet under a ResourceQuota, an app gets the
replicas that fit and the rest is refused; every quota object applies (the tightest wins).

Charges, per app:
- memory: replicas x the worst case of one replica (`wasmlet.api.footprint`: limits.memory in
  command mode, limits.memory x limits.maxConcurrency in http mode);
- replicas: replicas;
- httpPorts: the distinct `http.port`s of http apps that place at least one replica. An http
  app whose port would go beyond the limit places nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wasmlet.api.footprint import footprint_of_template, format_bytes

QUOTA_RE = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti)?$")
_SUFFIX = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
QUOTA_EXCEEDED = "QuotaExceeded"


class Resource(StrEnum):
    """What a WasmAppQuota limits: the names of its spec.hard and status.used fields."""

    MEMORY = "memory"
    HTTP_PORTS = "httpPorts"
    REPLICAS = "replicas"


@dataclass(frozen=True)
class Quota:
    """One WasmAppQuota's limits (None: that resource is not limited by it)."""

    name: str
    memory: int | None = None
    http_ports: int | None = None
    replicas: int | None = None


@dataclass(frozen=True)
class AppDemand:
    """What one app asks for."""

    name: str
    created: str  # RFC 3339 creationTimestamp: sorts in time order
    replicas: int
    memory_per_replica: int
    http_port: int | None = None  # http mode only


@dataclass(frozen=True)
class Refusal:
    """Why an app got fewer replicas than it asked for: the first quota that ran out."""

    quota: str
    resource: Resource
    used: int  # charged to apps before this one when it was refused
    hard: int
    wanted: int
    allowed: int
    per_replica: int = 0  # memory per replica, for the message
    port: int | None = None

    @property
    def message(self) -> str:
        who = f"WasmAppQuota {self.quota}"
        if self.resource is Resource.HTTP_PORTS:
            return (
                f"{who}: httpPorts used {self.used} of hard {self.hard}; http.port {self.port} "
                "would be one more, so no replica is placed. Use a port this namespace already "
                "serves, delete an http app, or ask an administrator to raise spec.hard.httpPorts"
            )
        if self.resource is Resource.MEMORY:
            used, hard = format_bytes(self.used), format_bytes(self.hard)
            need = (
                f"each replica needs {format_bytes(self.per_replica)} (limits.memory, "
                "x limits.maxConcurrency in http mode)"
            )
        else:
            used, hard, need = str(self.used), str(self.hard), "each replica counts 1"
        return (
            f"{who}: {self.allowed} of {self.wanted} replicas fit; {self.resource.value} used "
            f"{used} of hard {hard}, {need}. Lower replicas or limits, free quota in this "
            f"namespace, or ask an administrator to raise spec.hard.{self.resource.value}"
        )


@dataclass(frozen=True)
class Admission:
    allowed: int
    refusal: Refusal | None = None


@dataclass(frozen=True)
class Used:
    """What a quota's status reports as used."""

    memory: int = 0
    http_ports: int = 0
    replicas: int = 0

    def as_status(self) -> dict[str, Any]:
        return {
            Resource.MEMORY.value: format_bytes(self.memory) if self.memory else "0",
            Resource.HTTP_PORTS.value: self.http_ports,
            Resource.REPLICAS.value: self.replicas,
        }


@dataclass(frozen=True)
class QuotaDecision:
    apps: Mapping[str, Admission]
    used: Mapping[str, Used] = field(default_factory=dict)  # per quota name

    def admission(self, app: str, wanted: int) -> Admission:
        return self.apps.get(app, Admission(wanted))


def parse_memory(value: str, path: str = "spec.hard.memory") -> int:
    m = QUOTA_RE.match(value)
    if not m:
        raise ValueError(f"{path}: {value!r} is not a quantity like 8Gi (suffixes Ki, Mi, Gi, Ti)")
    return int(m.group(1)) * _SUFFIX[m.group(2)]


def quota_from(obj: Mapping[str, Any]) -> Quota:
    """A Quota from a WasmAppQuota object (the CRD has validated it)."""
    hard = (obj.get("spec") or {}).get("hard") or {}
    memory = hard.get("memory")
    ports = hard.get("httpPorts")
    replicas = hard.get("replicas")
    return Quota(
        name=str(obj["metadata"]["name"]),
        memory=parse_memory(str(memory)) if memory is not None else None,
        http_ports=int(ports) if ports is not None else None,
        replicas=int(replicas) if replicas is not None else None,
    )


def _fit(hard: int | None, used: int, per_replica: int) -> int | None:
    """Replicas that still fit under one limit (None: unlimited)."""
    if hard is None or per_replica <= 0:
        return None
    return max(hard - used, 0) // per_replica


def decide(apps: Sequence[AppDemand], quotas: Sequence[Quota]) -> QuotaDecision:
    """How many replicas each app may place, and what each quota has used."""
    if not quotas:
        return QuotaDecision({a.name: Admission(a.replicas) for a in apps})
    memory = {q.name: 0 for q in quotas}
    replicas = {q.name: 0 for q in quotas}
    ports: set[int] = set()
    out: dict[str, Admission] = {}
    for app in sorted(apps, key=lambda a: (a.created, a.name)):
        allowed, refusal = app.replicas, None
        new_port = app.http_port is not None and app.http_port not in ports
        if new_port and app.replicas > 0:
            for q in sorted(quotas, key=lambda q: q.name):
                if q.http_ports is not None and len(ports) + 1 > q.http_ports:
                    allowed = 0
                    refusal = Refusal(q.name, Resource.HTTP_PORTS, len(ports), q.http_ports,
                                      app.replicas, 0, port=app.http_port)  # fmt: skip
                    break
        if allowed:
            for q in sorted(quotas, key=lambda q: q.name):
                limits = (
                    (Resource.MEMORY, q.memory, memory[q.name], app.memory_per_replica),
                    (Resource.REPLICAS, q.replicas, replicas[q.name], 1),
                )
                for resource, hard, used, per in limits:
                    fit = _fit(hard, used, per)
                    if fit is not None and fit < allowed:
                        assert hard is not None
                        allowed = fit
                        refusal = Refusal(q.name, resource, used, hard, app.replicas, fit,
                                          per_replica=app.memory_per_replica)  # fmt: skip
        for q in quotas:
            memory[q.name] += allowed * app.memory_per_replica
            replicas[q.name] += allowed
        if allowed and app.http_port is not None:
            ports.add(app.http_port)
        out[app.name] = Admission(allowed, refusal)
    totals = {q.name: Used(memory[q.name], len(ports), replicas[q.name]) for q in quotas}
    return QuotaDecision(out, totals)


def demand_from(app: Mapping[str, Any]) -> AppDemand:
    """An AppDemand from a WasmApp object (raw: the CRD has applied defaults and rules)."""
    meta = app.get("metadata") or {}
    spec = app.get("spec") or {}
    port = (spec.get("http") or {}).get("port") if spec.get("mode") == "http" else None
    return AppDemand(
        name=str(meta.get("name")),
        created=str(meta.get("creationTimestamp") or ""),
        replicas=int(spec.get("replicas") or 0),
        memory_per_replica=footprint_of_template(spec).per_replica,
        http_port=int(port) if port is not None else None,
    )


def status_patch(quota: Mapping[str, Any], used: Used) -> dict[str, Any] | None:
    """The status to write on a WasmAppQuota, or None if it already says so."""
    hard = dict(((quota.get("spec") or {}).get("hard")) or {})
    wanted = {"hard": hard, "used": used.as_status()}
    current = quota.get("status") or {}
    if all(current.get(k) == v for k, v in wanted.items()):
        return None
    return wanted
