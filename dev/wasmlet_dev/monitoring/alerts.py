"""wasmlet's alert rules, built from parameters: shipped durations, or short ones for tests.

Each alert's `runbook_url` points at the section of docs/runbook.md named after the alert.
Per-app series are aggregated with `max by` or `sum by` over `namespace, app`, so the two
operator replicas (only the leader sets app series) and many agents give one alert per app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wasmlet.api.constants import SYSTEM_NAMESPACE

RUNBOOK = "https://github.com/wasmlet/wasmlet/blob/main/docs/runbook.md"
GROUP = "wasmlet"


@dataclass(frozen=True)
class AlertParams:
    """Durations are Prometheus durations (`5m`); `*_for` is an alert's `for:`, `*_window` the
    range of its rate or increase."""

    agent_job: str = "wasmlet-agents"
    operator_job: str = "wasmlet-operator"
    agent_down_for: str = "5m"
    node_not_ready_for: str = "5m"
    app_not_ready_for: str = "15m"
    # Counted after the app's own progressDeadlineSeconds has already passed.
    rollout_stuck_for: str = "5m"
    crashloop_window: str = "10m"
    crashloop_restarts: int = 3
    crashloop_for: str = "5m"
    pull_window: str = "10m"
    pull_for: str = "5m"
    http_window: str = "5m"
    http_5xx_ratio: float = 0.05
    http_for: str = "10m"
    cold_start_window: str = "10m"
    cold_start_p99_seconds: float = 0.05
    cold_start_for: str = "15m"
    leader_for: str = "5m"
    reconcile_window: str = "10m"
    reconcile_errors_per_second: float = 0.1
    reconcile_for: str = "10m"
    runbook: str = RUNBOOK
    evaluation_interval: str = "30s"


SHIPPED = AlertParams()

# For a Prometheus scraping every second against the test stack: windows of a few scrapes.
SHORT = AlertParams(
    agent_down_for="3s",
    node_not_ready_for="3s",
    app_not_ready_for="5s",
    rollout_stuck_for="2s",
    crashloop_window="30s",
    crashloop_for="2s",
    pull_window="30s",
    pull_for="2s",
    http_window="20s",
    http_for="2s",
    cold_start_window="30s",
    cold_start_p99_seconds=0.25,  # loaded shared test machines; e2e lowers it to see it fire
    cold_start_for="2s",
    leader_for="3s",
    reconcile_window="30s",
    reconcile_errors_per_second=0.01,
    reconcile_for="2s",
    evaluation_interval="1s",
)


def seconds(duration: str) -> float:
    """A Prometheus duration of one unit (`30s`, `5m`, `1h`) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in ("ms", "s", "m", "h", "d"):
        if duration.endswith(unit) and duration[: -len(unit)].isdigit():
            return int(duration[: -len(unit)]) * units[unit]
    raise ValueError(f"{duration!r}: not a Prometheus duration like 30s or 5m")


def longest_for(p: AlertParams) -> float:
    return max(seconds(r["for"]) for r in alert_rules(p))


def _alert(
    p: AlertParams, name: str, expr: str, for_: str, severity: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{p.runbook}#{name.lower()}",
        },
    }


def alert_rules(p: AlertParams) -> list[dict[str, Any]]:
    """Every alert, in runbook order."""
    app = "namespace, app"
    return [
        _alert(
            p, "WasmletAgentDown",
            f'up{{job="{p.agent_job}"}} == 0',
            p.agent_down_for, "critical",
            "wasmlet agent {{ $labels.instance }} cannot be scraped",
            "Prometheus has not reached the agent at {{ $labels.instance }} for "
            f"{p.agent_down_for}; its instances may be running unwatched or not at all.",
        ),
        _alert(
            p, "WasmletNodeNotReady",
            f'max by (node) (wasmlet_node_ready{{job="{p.operator_job}"}}) == 0',
            p.node_not_ready_for, "warning",
            "wasmlet node {{ $labels.node }} is not ready",
            "The heartbeat Lease of node {{ $labels.node }} is stale; the operator moves its "
            "instances to other nodes.",
        ),
        _alert(
            p, "WasmletAppNotReady",
            f'max by ({app}) (wasmlet_app_status_condition{{condition="Ready",status="False"}})'
            " == 1",
            p.app_not_ready_for, "warning",
            "WasmApp {{ $labels.namespace }}/{{ $labels.app }} is not Ready",
            "WasmApp {{ $labels.namespace }}/{{ $labels.app }} has had Ready=False for "
            f"{p.app_not_ready_for}.",
        ),
        _alert(
            p, "WasmletRolloutStuck",
            f"max by ({app}) (wasmlet_app_status_condition"
            '{condition="Progressing",status="False"}) == 1',
            p.rollout_stuck_for, "warning",
            "Rollout of WasmApp {{ $labels.namespace }}/{{ $labels.app }} is stuck",
            "WasmApp {{ $labels.namespace }}/{{ $labels.app }} has made no rollout progress for "
            "its progressDeadlineSeconds (Progressing=False, ProgressDeadlineExceeded) and for "
            f"{p.rollout_stuck_for} since; its old instances keep serving.",
        ),
        _alert(
            p, "WasmletInstanceCrashLooping",
            f"sum by ({app}) (increase(wasmlet_instance_restarts_total"
            f'{{reason!="Completed"}}[{p.crashloop_window}])) > {p.crashloop_restarts}',
            p.crashloop_for, "warning",
            "Instances of {{ $labels.namespace }}/{{ $labels.app }} are crash-looping",
            "{{ $value | humanize }} restarts after a failed run in the last "
            f"{p.crashloop_window}.",
        ),
        _alert(
            p, "WasmletModulePullFailing",
            f"sum by (instance, reason) (increase(wasmlet_module_pull_errors_total"
            f"[{p.pull_window}])) > 0",
            p.pull_for, "warning",
            "Module pulls fail on {{ $labels.instance }} ({{ $labels.reason }})",
            "The agent at {{ $labels.instance }} failed to pull modules "
            f"({{{{ $labels.reason }}}}) in the last {p.pull_window}.",
        ),
        _alert(
            p, "WasmletHTTPErrorRatio",
            f'sum by ({app}) (rate(wasmlet_http_requests_total{{code=~"5.."}}[{p.http_window}]))'
            f" / sum by ({app}) (rate(wasmlet_http_requests_total[{p.http_window}]))"
            f" > {p.http_5xx_ratio}",
            p.http_for, "warning",
            "{{ $labels.namespace }}/{{ $labels.app }} answers with 5xx",
            "{{ $value | humanizePercentage }} of requests to {{ $labels.namespace }}/"
            f"{{{{ $labels.app }}}} got a 5xx response (threshold {p.http_5xx_ratio:.0%}).",
        ),
        _alert(
            p, "WasmletColdStartSlow",
            f"histogram_quantile(0.99, sum by ({app}, le) (rate(wasmlet_cold_start_seconds_bucket"
            f'{{phase="instantiate"}}[{p.cold_start_window}]))) > {p.cold_start_p99_seconds}',
            p.cold_start_for, "info",
            "Cold starts of {{ $labels.namespace }}/{{ $labels.app }} are slow",
            "The p99 instantiate time of {{ $labels.namespace }}/{{ $labels.app }} is "
            f"{{{{ $value | humanizeDuration }}}} (threshold {p.cold_start_p99_seconds}s).",
        ),
        _alert(
            p, "WasmletOperatorNoLeader",
            f'(max(wasmlet_operator_leader{{job="{p.operator_job}"}}) or vector(0)) < 1',
            p.leader_for, "critical",
            "No wasmlet operator replica is leading",
            "No operator replica holds the leader Lease: WasmApps are not reconciled and "
            "lost nodes are not replaced.",
        ),
        _alert(
            p, "WasmletReconcileErrors",
            f"sum by (reason) (rate(wasmlet_operator_reconcile_errors_total"
            f"[{p.reconcile_window}])) > {p.reconcile_errors_per_second}",
            p.reconcile_for, "warning",
            "WasmApp reconciles fail ({{ $labels.reason }})",
            "{{ $value | humanize }} reconciles/s fail with {{ $labels.reason }}.",
        ),
    ]  # fmt: skip


def rule_groups(p: AlertParams) -> dict[str, Any]:
    """The `groups:` document, as a Prometheus rule file and a PrometheusRule's spec."""
    return {"groups": [{"name": GROUP, "interval": p.evaluation_interval, "rules": alert_rules(p)}]}


def prometheus_rule(p: AlertParams, namespace: str = SYSTEM_NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "wasmlet",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "wasmlet"},
        },
        "spec": rule_groups(p),
    }
