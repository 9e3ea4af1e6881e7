"""The README's metrics table names every exported metric, and no label is unbounded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from wasmlet_agent.metrics import AgentMetrics
from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_operator.metrics import OperatorMetrics


def test_every_metric_is_in_the_readme_table() -> None:
    readme = (repo_root() / "README.md").read_text()
    names = set()
    for metrics in (AgentMetrics(CollectorRegistry()), OperatorMetrics(CollectorRegistry())):
        names |= {m.name for m in metrics.registry.collect() if m.name.startswith("wasmlet_")}
    assert len(names) > 25
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert missing == [], f"add these to the README's metrics table: {missing}"


# Labels whose values are bounded by the cluster's objects or by the code's enums. A label
# like `instance_id`, `request_id` or `path` would create a series per instance or request.
BOUNDED_LABELS = {
    "namespace", "app", "node", "phase", "state", "code", "reason", "kind", "problem", "since",
    "operation", "component", "version", "wasmtime", "condition", "status", "le",
    "result",  # successful | failed (readiness checks)
}  # fmt: skip


def test_no_metric_has_an_unbounded_label() -> None:
    found = 0
    for metrics in (AgentMetrics(CollectorRegistry()), OperatorMetrics(CollectorRegistry())):
        for metric in vars(metrics).values():
            if isinstance(metric, MetricWrapperBase):
                found += 1
                unbounded = set(metric._labelnames) - BOUNDED_LABELS
                assert not unbounded, f"{metric._name} has unbounded labels {sorted(unbounded)}"
    assert found > 25
