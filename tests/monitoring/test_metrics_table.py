"""The README's metrics table names every metric the agent and the operator export."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

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
