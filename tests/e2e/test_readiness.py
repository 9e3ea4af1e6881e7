"""spec.http.readinessCheck on the real stack: status, the EndpointSlice and rollouts follow it.

The `cgi` guest answers /status/NNN with NNN and every other path with 200, so a check path
chooses whether the app passes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.test_apps import condition
from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.cluster.stack import http_get
from wasmlet_dev.ports import free_port
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e

FAILED = "ReadinessCheckFailed"


def checked_app(stack: Stack, name: str, port: int, path: str, **spec: Any) -> dict[str, Any]:
    check = {"path": path, "periodSeconds": 1, "failureThreshold": 1}
    return wasmapp(name, stack.modules["cgi"], mode="http", replicas=2,
                   http={"port": port, "readinessCheck": check}, **spec)  # fmt: skip


def slice_endpoints(stack: Stack, ns: str, name: str) -> list[dict[str, Any]]:
    out = stack.kube.kubectl(
        "get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={name}",
        "-o", "json",
    ).stdout  # fmt: skip
    return [e for s in json.loads(out)["items"] for e in s.get("endpoints") or []]


def placed_addresses(stack: Stack, ns: str, name: str) -> list[str]:
    return [stack.agents[p["spec"]["node"]].address for p in stack.placements(ns, name)]


def test_an_app_failing_its_check_runs_and_serves_but_is_not_ready(
    stack: Stack, namespace: str
) -> None:
    port = free_port(next(iter(stack.agents.values())).address)
    stack.apply(namespace, checked_app(stack, "failing", port, "/status/500"))

    def instances() -> list[dict[str, Any]]:
        return [
            i
            for p in stack.placements(namespace, "failing")
            for i in (p.get("status") or {}).get("instances") or []
        ]

    def reported() -> dict[str, Any] | None:
        app = stack.app(namespace, "failing")
        ready = condition(app, "Ready")
        status = app.get("status") or {}
        checked = [i for i in instances() if i.get("reason") == FAILED]
        if status.get("replicas") == 2 and ready.get("reason") == FAILED and len(checked) == 2:
            return app
        return None

    app = wait_until(reported, "failing: 2 instances, both failing their check", 60)
    status = app["status"]
    assert status["readyReplicas"] == 0 and status["ready"] == "0/2"
    assert status.get("endpoints", []) == []
    ready = condition(app, "Ready")
    assert ready["status"] == "False"
    assert "readiness check failed: GET /status/500 answered 500" in ready["message"]
    assert condition(app, "Degraded")["reason"] == FAILED
    # The agents say why per instance: running, not ready.
    assert all(i["state"] == "Running" and i["ready"] is False for i in instances())
    # Out of the Service's ready endpoints, but listed (as Pods failing readiness are).
    endpoints = wait_until(
        lambda: (e := slice_endpoints(stack, namespace, "failing")) and len(e) == 2 and e,
        "two endpoints in the slice",
    )
    assert [e["conditions"]["ready"] for e in endpoints] == [False, False]
    # Readiness does not stop serving: each node still answers requests.
    for address in placed_addresses(stack, namespace, "failing"):
        code, body = http_get(f"http://{address}:{port}/hi")
        assert code == 200 and b"path=/hi" in body


def test_an_app_passing_its_check_becomes_ready_and_a_failing_update_leaves_it_serving(
    stack: Stack, namespace: str
) -> None:
    port = free_port(next(iter(stack.agents.values())).address)
    stack.apply(namespace, checked_app(stack, "passing", port, "/healthz"))
    app = wait_until(
        lambda: (
            (a := stack.app(namespace, "passing"))
            and condition(a, "Ready").get("status") == "True"
            and a
        ),
        "passing Ready",
        60,
    )
    assert app["status"]["readyReplicas"] == 2 and len(app["status"]["endpoints"]) == 2
    wait_until(
        lambda: (
            [e["conditions"]["ready"] for e in slice_endpoints(stack, namespace, "passing")]
            == [True, True]
        ),
        "both endpoints ready",
    )
    # An update whose check fails: the new revision runs beside the old one and never takes
    # over; the old instances stay ready and keep every request.
    stack.apply(
        namespace,
        checked_app(stack, "passing", port, "/status/503", env=[{"name": "V", "value": "2"}]),
    )

    def stuck() -> dict[str, Any] | None:
        a = stack.app(namespace, "passing")
        instances = [
            i
            for p in stack.placements(namespace, "passing")
            for i in (p.get("status") or {}).get("instances") or []
        ]
        failing = [i for i in instances if i.get("reason") == FAILED]
        # The app's status must be of the update too: read first, it may still be the one
        # the operator wrote before it saw the new generation (updatedReplicas 2).
        seen = (
            a is not None and a["status"].get("observedGeneration") == a["metadata"]["generation"]
        )
        running = failing and all(i["state"] == "Running" for i in failing)
        return a if seen and running else None

    app = wait_until(stuck, "the new revision runs, failing its check", 60)
    assert app["status"]["updatedReplicas"] == 0
    assert app["status"]["readyReplicas"] == 2
    assert [e["conditions"]["ready"] for e in slice_endpoints(stack, namespace, "passing")] == [
        True,
        True,
    ]
    for address in placed_addresses(stack, namespace, "passing"):
        for _ in range(3):
            code, body = http_get(f"http://{address}:{port}/hi")
            # The old revision answers (the new one has V=2 in its environment).
            assert code == 200
            code, body = http_get(f"http://{address}:{port}/env")
            assert b"V=2" not in body
