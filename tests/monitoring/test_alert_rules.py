"""The shipped alert rules: generated files up to date, valid for promtool, and each alert
fires on the series that mean trouble and stays quiet on healthy ones (`promtool test rules`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_dev.monitoring.alerts import SHIPPED, SHORT, alert_rules, rule_groups
from wasmlet_dev.monitoring.render import rendered

MONITORING = repo_root() / "deploy" / "monitoring"
RUNBOOK = repo_root() / "docs" / "runbook.md"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install prometheus (hack/install-deps.sh)")
    return path


def test_generated_files_have_not_drifted() -> None:
    for name, text in rendered().items():
        path = MONITORING / name
        assert path.exists() and path.read_text() == text, (
            f"{path} differs from what dev/wasmlet_dev/monitoring generates: "
            "run bash hack/render-monitoring.sh"
        )


@pytest.mark.parametrize("params", [SHIPPED, SHORT], ids=["shipped", "short"])
def test_promtool_checks_the_rules(params: Any, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rule_groups(params)))
    out = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_rules(params))} rules found" in out.stdout


def test_the_prometheus_rule_carries_the_same_groups(tmp_path: Path) -> None:
    rule = yaml.safe_load((MONITORING / "prometheus-rule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    plain = yaml.safe_load((MONITORING / "wasmlet-rules.yml").read_text())
    assert rule["spec"] == plain


def test_every_alert_links_to_its_runbook_section() -> None:
    headings = {
        m.group(1).lower() for m in re.finditer(r"^## (\S+)$", RUNBOOK.read_text(), re.MULTILINE)
    }
    for rule in alert_rules(SHIPPED):
        url = rule["annotations"]["runbook_url"]
        assert url.endswith(f"docs/runbook.md#{rule['alert'].lower()}"), url
        assert rule["alert"].lower() in headings, f"docs/runbook.md has no ## {rule['alert']}"
    assert len(headings) == len(alert_rules(SHIPPED))


@dataclass(frozen=True)
class Case:
    """Series (1-minute samples) that must fire the alert at `at`, with these labels, and
    series of a healthy system on which it must stay quiet."""

    alert: str
    firing: dict[str, str]
    labels: dict[str, str]
    healthy: dict[str, str]
    at: str = "30m"


AGENT = 'job="wasmlet-agents",instance="n1:10260"'
OPERATOR = 'job="wasmlet-operator",instance="op:9090"'
APP = 'namespace="shop",app="web"'
BUCKET = f'wasmlet_cold_start_seconds_bucket{{{AGENT},{APP},phase="instantiate"'
HTTP = f"wasmlet_http_requests_total{{{AGENT},{APP}"
RESTARTS = f"wasmlet_instance_restarts_total{{{AGENT},{APP}"
CONDITION = f'wasmlet_app_status_condition{{{OPERATOR},{APP},condition="Ready"'
PROGRESSING = f'wasmlet_app_status_condition{{{OPERATOR},{APP},condition="Progressing"'

CASES = [
    Case(
        "WasmletAgentDown",
        {f"up{{{AGENT}}}": "1x10 0x30"},
        {"job": "wasmlet-agents", "instance": "n1:10260", "severity": "critical"},
        {f"up{{{AGENT}}}": "1x40"},
    ),
    Case(
        "WasmletNodeNotReady",
        {f'wasmlet_node_ready{{{OPERATOR},node="n1"}}': "1x10 0x30"},
        {"node": "n1", "severity": "warning"},
        {f'wasmlet_node_ready{{{OPERATOR},node="n1"}}': "1x40"},
    ),
    Case(
        "WasmletAppNotReady",
        {f'{CONDITION},status="False"}}': "0x5 1x40", f'{CONDITION},status="True"}}': "1x5 0x40"},
        {"namespace": "shop", "app": "web", "severity": "warning"},
        # Not Ready for 10 minutes during a rollout, then Ready again: no page.
        {
            f'{CONDITION},status="False"}}': "0x5 1x10 0x30",
            f'{CONDITION},status="True"}}': "1x5 0x10 1x30",
        },
    ),
    Case(
        "WasmletRolloutStuck",
        {
            f'{PROGRESSING},status="False"}}': "0x5 1x40",
            f'{PROGRESSING},status="True"}}': "1x5 0x40",
        },
        {"namespace": "shop", "app": "web", "severity": "warning"},
        # Rolling out for a long while, then complete: Progressing stays True, no page.
        {f'{PROGRESSING},status="False"}}': "0x40", f'{PROGRESSING},status="True"}}': "1x40"},
    ),
    Case(
        "WasmletInstanceCrashLooping",
        {f'{RESTARTS},reason="Error"}}': "0+1x40"},
        {"namespace": "shop", "app": "web", "severity": "warning"},
        # A job that completes and is restarted (restartPolicy Always) is not crash-looping.
        {f'{RESTARTS},reason="Completed"}}': "0+1x40", f'{RESTARTS},reason="Error"}}': "2x40"},
    ),
    Case(
        "WasmletModulePullFailing",
        {f'wasmlet_module_pull_errors_total{{{AGENT},reason="NotFound"}}': "0+1x40"},
        {"instance": "n1:10260", "reason": "NotFound", "severity": "warning"},
        # Failures before the agent's last restart or long ago, none since: quiet.
        {f'wasmlet_module_pull_errors_total{{{AGENT},reason="NotFound"}}': "5x40"},
    ),
    Case(
        "WasmletHTTPErrorRatio",
        {f'{HTTP},code="500"}}': "0+10x40", f'{HTTP},code="200"}}': "0+90x40"},
        {"namespace": "shop", "app": "web", "severity": "warning"},
        {f'{HTTP},code="500"}}': "0+1x40", f'{HTTP},code="200"}}': "0+99x40"},
    ),
    Case(
        "WasmletColdStartSlow",
        {
            f'{BUCKET},le="0.0001"}}': "0x40",
            f'{BUCKET},le="0.1"}}': "0+100x40",
            f'{BUCKET},le="+Inf"}}': "0+100x40",
        },
        {"namespace": "shop", "app": "web", "severity": "info"},
        {
            f'{BUCKET},le="0.0001"}}': "0+100x40",
            f'{BUCKET},le="0.1"}}': "0+100x40",
            f'{BUCKET},le="+Inf"}}': "0+100x40",
        },
    ),
    Case(
        "WasmletOperatorNoLeader",
        {
            f"wasmlet_operator_leader{{{OPERATOR}}}": "1x10 0x30",
            'wasmlet_operator_leader{job="wasmlet-operator",instance="op2:9090"}': "0x40",
        },
        {"severity": "critical"},
        {
            f"wasmlet_operator_leader{{{OPERATOR}}}": "1x20 0x20",
            'wasmlet_operator_leader{job="wasmlet-operator",instance="op2:9090"}': "0x20 1x20",
        },
    ),
    Case(
        "WasmletReconcileErrors",
        {f'wasmlet_operator_reconcile_errors_total{{{OPERATOR},reason="Forbidden"}}': "0+60x40"},
        {"reason": "Forbidden", "severity": "warning"},
        # An error a minute (a conflict now and then) is normal.
        {f'wasmlet_operator_reconcile_errors_total{{{OPERATOR},reason="Conflict"}}': "0+1x40"},
    ),
]


def _alerts_series(alert: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, "alertname": alert}.items()))
    return f'ALERTS{{{inner},alertstate="firing"}}'


def _series(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"series": s, "values": v} for s, v in values.items()]


def test_every_alert_has_a_case() -> None:
    assert {c.alert for c in CASES} == {r["alert"] for r in alert_rules(SHIPPED)}


@pytest.mark.parametrize("case", CASES, ids=[c.alert for c in CASES])
def test_alert_fires_on_trouble_and_stays_quiet_when_healthy(case: Case, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text((MONITORING / "wasmlet-rules.yml").read_text())  # the shipped file
    selector = f'ALERTS{{alertname="{case.alert}",alertstate="firing"}}'
    tests = [
        {
            "interval": "1m",
            "input_series": _series(case.firing),
            "promql_expr_test": [
                {
                    "expr": selector,
                    "eval_time": case.at,
                    "exp_samples": [
                        {"labels": _alerts_series(case.alert, case.labels), "value": 1}
                    ],
                }
            ],
        },
        {
            "interval": "1m",
            "input_series": _series(case.healthy),
            "alert_rule_test": [
                {"alertname": case.alert, "eval_time": f"{m}m", "exp_alerts": []}
                for m in (10, 20, 30, 39)
            ],
        },
    ]
    spec = tmp_path / "test.yml"
    spec.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests})
    )
    out = subprocess.run([promtool(), "test", "rules", str(spec)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
