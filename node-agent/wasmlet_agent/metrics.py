"""The agent's Prometheus metrics, on a registry passed in (tests read them directly)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

from wasmlet.version import wasmlet_version

# Cold-start phases are sub-millisecond to seconds (pull over a network, compile a Go module).
_PHASE_BUCKETS = (
    0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RequestMetrics(Protocol):
    """What an HTTP front observes: the agent's own metrics, or a serving process's."""

    @property
    def requests(self) -> Counter: ...
    @property
    def request_duration(self) -> Histogram: ...
    @property
    def cold_start(self) -> Histogram: ...


def _request_metrics(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    requests = Counter(
        "wasmlet_http_requests", "HTTP requests served by instances.",
        ["namespace", "app", "code"], registry=registry,
    )  # fmt: skip
    duration = Histogram(
        "wasmlet_http_request_duration_seconds",
        "Time from request received to response written, including the instance start.",
        ["namespace", "app"],
        buckets=_REQUEST_BUCKETS,
        registry=registry,
    )
    return requests, duration


def _cold_start(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "wasmlet_cold_start_seconds",
        "Time spent in each phase of starting an instance: pull, compile, load "
        "(precompiled from cache), instantiate.",
        ["namespace", "app", "phase"],
        buckets=_PHASE_BUCKETS,
        registry=registry,
    )


def _app_cpu(registry: CollectorRegistry) -> Counter:
    return Counter(
        "wasmlet_app_cpu_seconds",
        "CPU time of an app's instances on this node (each instance's thread, from "
        "instantiation to teardown), counted while they run.",
        ["namespace", "app"],
        registry=registry,
    )


class ServingMetrics:
    """A serving process's metrics: only counters and histograms, which prometheus-client's
    multiprocess mode sums over processes (its gauges would need a pid label)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests, self.request_duration = _request_metrics(registry)
        self.cold_start = _cold_start(registry)
        self.cpu = _app_cpu(registry)
        self.process_requests = Counter(
            "wasmlet_http_serving_process_requests",
            "HTTP requests served by each serving process (by its index, not its pid, so "
            "a restart keeps the series).",
            ["process"], registry=registry,
        )  # fmt: skip


class MergingRegistry(CollectorRegistry):
    """A registry whose families with one name are merged into one.

    The agent's own collectors and the serving processes' (read from the multiprocess
    directory) both export e.g. wasmlet_cold_start_seconds; the text format allows one
    family per name. Equal samples (same name and labels) are summed.
    """

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], int]] = {}
        for family in super().collect():
            name = family.name
            if family.type == "counter" and name.endswith("_total"):
                name = name[: -len("_total")]  # the multiprocess collector keeps the suffix
            into = merged.get(name)
            if into is None:
                into = merged[name] = Metric(name, family.documentation, family.type, family.unit)
                values[name] = {}
            index = values[name]
            for sample in family.samples:
                at = (sample.name, tuple(sorted(sample.labels.items())))
                if at in index:
                    old = into.samples[index[at]]
                    into.samples[index[at]] = old._replace(value=old.value + sample.value)
                else:
                    index[at] = len(into.samples)
                    into.samples.append(sample)
        return list(merged.values())


class AgentMetrics:
    """Every metric the agent exports, named per Prometheus conventions (wasmlet_*)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)  # process_resident_memory_bytes: the agent's RSS
        self.info = Gauge(
            "wasmlet_agent_info", "Agent build and node.", ["node", "wasmtime"], registry=registry
        )
        self.build_info = Gauge(
            "wasmlet_build_info", "Always 1; the labels say which wasmlet build runs.",
            ["component", "version"], registry=registry,
        )  # fmt: skip
        self.build_info.labels(component="agent", version=wasmlet_version()).set(1)
        self.cold_start = _cold_start(registry)
        self.instances = Gauge(
            "wasmlet_instances", "Instances on this node by app and lifecycle state.",
            ["namespace", "app", "state"], registry=registry,
        )  # fmt: skip
        self.memory = Gauge(
            "wasmlet_app_linear_memory_bytes",
            "Live linear memory of an app's running instances on this node (HTTP mode: its "
            "requests in flight), sampled on each guest's thread while it runs; components "
            "count 0, their memories are not visible.",
            ["namespace", "app"],
            registry=registry,
        )
        self.cpu = _app_cpu(registry)
        self.requests, self.request_duration = _request_metrics(registry)
        self.serving_restarts = Counter(
            "wasmlet_http_serving_process_restarts",
            "HTTP serving processes that ended unexpectedly and were started again.",
            registry=registry,
        )
        # Apart from wasmlet_http_requests: a failing check path must not page as user 5xx.
        self.readiness_checks = Counter(
            "wasmlet_readiness_checks",
            "Readiness checks (spec.http.readinessCheck) run by the agent, by result.",
            ["namespace", "app", "result"], registry=registry,
        )  # fmt: skip
        self.restarts = Counter(
            "wasmlet_instance_restarts", "Instance restarts by the reason the previous run ended.",
            ["namespace", "app", "reason"], registry=registry,
        )  # fmt: skip
        self.exits = Counter(
            "wasmlet_instance_exits",
            "Instance runs that ended, by reason (Completed, Error, Trapped, TimedOut, "
            "OutOfMemory, OutOfFuel).",
            ["namespace", "app", "reason"],
            registry=registry,
        )
        self.cache_hits = Counter(
            "wasmlet_module_cache_hits", "Module cache lookups answered from disk.",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.cache_misses = Counter(
            "wasmlet_module_cache_misses", "Module cache lookups that had to pull or compile.",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.cache_bytes = Gauge(
            "wasmlet_module_cache_bytes", "Bytes of modules and precompiled artifacts on disk.",
            registry=registry,
        )  # fmt: skip
        self.cache_modules = Gauge(
            "wasmlet_module_cache_modules", "Modules whose bytes are in the disk cache.",
            registry=registry,
        )  # fmt: skip
        self.cache_evictions = Gauge(
            "wasmlet_module_cache_evictions",
            "Entries evicted from the disk cache (LRU) since the agent started.",
            registry=registry,
        )
        # Series that exist from the start, so ratios and rates have data before the first
        # event (Prometheus convention for known label values).
        for kind in ("module", "compiled"):
            self.cache_hits.labels(kind=kind)
            self.cache_misses.labels(kind=kind)
        self.pull_errors = Counter(
            "wasmlet_module_pull_errors", "Failed module pulls by reason.",
            ["reason"], registry=registry,
        )  # fmt: skip
        # Edge autonomy (cluster mode): running from the node's journal without the API server.
        self.autonomous = Gauge(
            "wasmlet_agent_autonomous",
            "1 while the agent runs from its journal or has not reached the API server "
            "recently, else 0.",
            registry=registry,
        )
        self.journal_rejected = Counter(
            "wasmlet_agent_journal_rejected", "Journals refused at start, by problem.",
            ["problem"], registry=registry,
        )  # fmt: skip
        self.journal_writes = Counter(
            "wasmlet_agent_journal_writes", "Journal rewrites (its content changed).",
            registry=registry,
        )  # fmt: skip
        self.journal_restore = Gauge(
            "wasmlet_agent_journal_restore_seconds",
            "Last start from the journal: seconds until every app was ready, from reading the "
            "journal (since=journal) and from process start (since=process).",
            ["since"], registry=registry,
        )  # fmt: skip
