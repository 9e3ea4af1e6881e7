"""The alert rules, with short windows, evaluated by a real Prometheus against the running
stack: a scenario built for each alert makes it fire; a healthy app keeps every alert quiet."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.prometheus import Prometheus
from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.cluster.stack import http_get
from wasmlet_dev.monitoring.alerts import SHORT, alert_rules, longest_for
from wasmlet_dev.ports import free_port
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e

# Alerts about the whole installation; the others carry the app's namespace.
GLOBAL = "WasmletAgentDown|WasmletNodeNotReady|WasmletOperatorNoLeader"


def firing(prometheus: Prometheus, alertname: str, **labels: str) -> list[dict[str, str]]:
    return [
        a
        for a in prometheus.alerts("firing")
        if a["alertname"] == alertname and all(a.get(k) == v for k, v in labels.items())
    ]


def wait_firing(prometheus: Prometheus, alertname: str, **labels: str) -> dict[str, str]:
    found = wait_until(
        lambda: firing(prometheus, alertname, **labels),
        f"{alertname} firing with {labels}",
        timeout=90,
        interval=0.5,
    )
    return found[0]


def http_app(stack: Stack, namespace: str, name: str, module: str) -> list[str]:
    port = free_port(stack.agents["e2e-node-1"].address)
    stack.apply(namespace, wasmapp(name, stack.modules[module], mode="http", replicas=2,
                                   http={"port": port}))  # fmt: skip
    endpoints: list[str] = wait_until(
        lambda: (
            len(e := (stack.app(namespace, name).get("status") or {}).get("endpoints") or []) == 2
            and e
        ),
        f"endpoints of {name}",
    )
    return endpoints


def test_a_healthy_app_and_stack_keep_every_alert_quiet(
    stack: Stack, prometheus: Prometheus, namespace: str
) -> None:
    endpoints = http_app(stack, namespace, "calm", "cgi")
    ready = f'wasmlet_app_status_condition{{namespace="{namespace}",condition="Ready"}}'
    wait_until(
        lambda: prometheus.query(f'{ready.removesuffix("}")},status="True"}} == 1'),
        "Ready=True scraped",
        timeout=30,
    )
    start = time.time()
    # Traffic until the rules have been evaluated on it for longer than the longest `for:`.
    horizon = start + longest_for(SHORT) + 2
    requests = 0
    while prometheus.last_evaluation() < horizon:
        assert time.time() < horizon + 60, "Prometheus stopped evaluating the rules"
        for endpoint in endpoints:
            assert http_get(f"http://{endpoint}/")[0] == 200
            requests += 1
    rate = f'sum(rate(wasmlet_http_requests_total{{namespace="{namespace}",code="200"}}[20s]))'
    assert float(prometheus.query(rate)[0]["value"][1]) > 0  # the 5xx rule saw this traffic
    window = f"{int(time.time() - start) + 1}s"
    # Neither pending nor firing at any evaluation in that window.
    seen = prometheus.query(f'ALERTS{{namespace="{namespace}"}}[{window}]')
    seen += prometheus.query(f'ALERTS{{alertname=~"{GLOBAL}"}}[{window}]')
    assert seen == [], [s["metric"] for s in seen]
    assert requests > 0


def test_a_crash_loop_fires(stack: Stack, prometheus: Prometheus, namespace: str) -> None:
    stack.apply(namespace, wasmapp("crashes", stack.modules["exit"], replicas=1, args=["3"],
                                   backoff={"initialSeconds": 0.2, "maxSeconds": 1}))  # fmt: skip
    alert = wait_firing(prometheus, "WasmletInstanceCrashLooping", namespace=namespace)
    assert alert["app"] == "crashes"
    assert alert["severity"] == "warning"


def test_a_missing_tag_fires_pull_failures_and_not_ready(
    stack: Stack, prometheus: Prometheus, namespace: str
) -> None:
    missing = stack.modules["cgi"].rpartition(":")[0] + ":no-such-tag"
    stack.apply(namespace, wasmapp("missing", missing, replicas=1))
    wait_firing(prometheus, "WasmletAppNotReady", namespace=namespace, app="missing")
    pull = wait_firing(prometheus, "WasmletModulePullFailing")
    assert pull["instance"] and pull["reason"]


def test_a_stuck_rollout_fires_rollout_stuck_and_not_app_not_ready(
    stack: Stack, prometheus: Prometheus, namespace: str, guests: dict[str, Path]
) -> None:
    v1 = stack.push(guests["cgi"], f"e2e/{namespace}/stuck", "v1")
    port = free_port(stack.agents["e2e-node-1"].address)
    spec = {"mode": "http", "http": {"port": port}, "replicas": 2, "progressDeadlineSeconds": 3,
            "backoff": {"initialSeconds": 1, "maxSeconds": 2}}  # fmt: skip
    stack.apply(namespace, wasmapp("stuck", v1, **spec))
    ready = f'wasmlet_app_status_condition{{namespace="{namespace}",condition="Ready"}}'
    not_ready = f'ALERTS{{namespace="{namespace}",alertname="WasmletAppNotReady"}}'
    wait_until(
        lambda: prometheus.query(f'{ready.removesuffix("}")},status="True"}} == 1'),
        "Ready=True scraped",
        timeout=60,
    )
    scraped = time.time()
    # The rules have seen it Ready (the app was not Ready while v1 started: pending then).
    wait_until(
        lambda: prometheus.last_evaluation() > scraped + 1 and not prometheus.query(not_ready),
        "the rules evaluated on Ready=True",
        timeout=60,
    )
    start = time.time()
    # A tag that does not exist: the old instances keep serving every replica.
    stack.apply(namespace, wasmapp("stuck", f"{stack.registry}/e2e/{namespace}/stuck:v2", **spec))
    alert = wait_firing(prometheus, "WasmletRolloutStuck", namespace=namespace, app="stuck")
    assert alert["severity"] == "warning"
    # Serving fine all along: the not-Ready alert was never even pending.
    window = f"{int(time.time() - start) + 1}s"
    seen = [
        (s["metric"], value)
        for s in prometheus.query(f"{not_ready}[{window}]")
        for value in s["values"]
        if float(value[0]) >= start
    ]
    assert seen == []


def test_a_trapping_http_guest_fires_the_5xx_ratio(
    stack: Stack, prometheus: Prometheus, namespace: str
) -> None:
    endpoints = http_app(stack, namespace, "traps", "trap")

    def alert() -> list[dict[str, str]]:
        for endpoint in endpoints:
            assert http_get(f"http://{endpoint}/")[0] >= 500
        return firing(prometheus, "WasmletHTTPErrorRatio", namespace=namespace, app="traps")

    wait_until(alert, "WasmletHTTPErrorRatio firing", timeout=90, interval=0.2)


def test_the_cold_start_rule_sees_the_apps_instantiations(
    stack: Stack, prometheus: Prometheus, namespace: str
) -> None:
    # Instantiation takes microseconds, so the shipped threshold cannot be reached on purpose:
    # the rule's own expression with the threshold lowered to 0 returns this app's p99.
    endpoints = http_app(stack, namespace, "starts", "cgi")
    lowered = dataclasses.replace(SHORT, cold_start_p99_seconds=0.0)
    (rule,) = [r for r in alert_rules(lowered) if r["alert"] == "WasmletColdStartSlow"]

    def p99() -> list[dict[str, Any]]:
        # Requests keep coming: a rate needs the counter to grow between scrapes.
        for endpoint in endpoints:
            assert http_get(f"http://{endpoint}/")[0] == 200
        return [
            r for r in prometheus.query(rule["expr"]) if r["metric"].get("namespace") == namespace
        ]

    found = wait_until(p99, "the cold start p99 of the app", timeout=60, interval=0.2)
    assert found[0]["metric"]["app"] == "starts"
    assert 0 < float(found[0]["value"][1]) < SHORT.cold_start_p99_seconds
    assert not firing(prometheus, "WasmletColdStartSlow", namespace=namespace)


@pytest.fixture
def stopped_agent(stack: Stack) -> Iterator[str]:
    agent = stack.agents["e2e-node-3"]
    agent.process.stop()
    try:
        yield agent.node
    finally:
        agent.restart()
        wait_until(  # back: the agent writes Ready=True itself
            lambda: f"{agent.node}   True" in stack.kube.kubectl("get", "wasmnodes").stdout,
            f"{agent.node} Ready again",
            timeout=60,
        )


def test_a_stopped_agent_fires_agent_down_and_node_not_ready(
    stack: Stack, prometheus: Prometheus, stopped_agent: str
) -> None:
    down = wait_firing(prometheus, "WasmletAgentDown")
    assert down["job"] == "wasmlet-agents"
    wait_firing(prometheus, "WasmletNodeNotReady", node=stopped_agent)
    assert not firing(prometheus, "WasmletNodeNotReady", node="e2e-node-1")
    # The operator marks the WasmNode Ready=Unknown; kubectl's READY column shows it.
    wait_until(
        lambda: f"{stopped_agent}   Unknown" in stack.kube.kubectl("get", "wasmnodes").stdout,
        "Ready=Unknown on the stopped node",
        timeout=30,
    )
    listing = stack.kube.kubectl("get", "wasmnodes").stdout
    assert listing.split("\n")[0].split()[:2] == ["NAME", "READY"]
    assert "e2e-node-1   True" in listing


def test_a_stopped_operator_fires_no_leader(stack: Stack, prometheus: Prometheus) -> None:
    stack.operator.stop()
    try:
        wait_firing(prometheus, "WasmletOperatorNoLeader")
    finally:
        stack.restart_operator()
    wait_until(
        lambda: not firing(prometheus, "WasmletOperatorNoLeader"),
        "a leader again",
        timeout=90,
    )


def test_refused_placement_writes_fire_reconcile_errors(
    stack: Stack, prometheus: Prometheus, namespace: str
) -> None:
    # An admission policy refuses the operator's placements in this namespace: every reconcile
    # of the app fails at the API server, as with lost RBAC or a stricter policy.
    name = f"refuse-placements-{namespace}"[:63]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": ["wasmlet.dev"], "apiVersions": ["*"],
                     "operations": ["CREATE", "UPDATE"], "resources": ["wasmplacements"]}
                ]
            },
            "validations": [{"expression": "false", "message": "refused by the test"}],
        },
    }  # fmt: skip
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    docs = yaml.safe_dump_all([policy, binding])
    stack.kube.kubectl("apply", "-f", "-", input=docs)
    probe = {
        "apiVersion": "wasmlet.dev/v1alpha1",
        "kind": "WasmPlacement",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"app": "probe", "node": "e2e-node-1", "replicas": 1, "revision": "r",
                 "template": {}},
    }  # fmt: skip

    def refusing() -> bool:
        dry = stack.kube.kubectl(
            "create", "--dry-run=server", "-f", "-", check=False, input=yaml.safe_dump(probe)
        )
        assert dry.returncode == 0 or "refused by the test" in dry.stderr, dry.stderr
        return dry.returncode != 0

    try:
        wait_until(refusing, "the admission policy in force", timeout=30)
        stack.apply(namespace, wasmapp("refused", stack.modules["long"], replicas=1))
        alert = wait_firing(prometheus, "WasmletReconcileErrors")
        assert alert["reason"] and alert["severity"] == "warning"
        assert stack.placements(namespace, "refused") == []  # the refusal was real
    finally:
        stack.kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=docs)
