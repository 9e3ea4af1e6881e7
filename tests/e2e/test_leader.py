"""Two operator replicas never act at once: the second waits on the Lease and takes over
when the first dies."""

from __future__ import annotations

import os
import signal
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from tests.fixtures.stack import NODE_GRACE_SECONDS, Stack, wasmapp
from wasmlet_dev.cluster.stack import start_operator
from wasmlet_dev.ports import free_port
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def holder(stack: Stack) -> str:
    lease: Any = client.CoordinationV1Api(stack.api).read_namespaced_lease(
        "wasmlet-operator", "wasmlet-system"
    )
    return str(lease.spec.holder_identity)


def ready(stack: Stack, ns: str, name: str) -> bool:
    st = stack.app(ns, name).get("status") or {}
    return st.get("readyReplicas") == 1


def ready_to_lead(stack: Stack) -> bool:
    """The running operator reports itself leader on its metrics port."""
    try:
        body = urllib.request.urlopen(
            f"http://127.0.0.1:{stack.operator_metrics_port}/metrics", timeout=5
        ).read()
    except OSError:
        return False
    return b"wasmlet_operator_leader 1.0" in body


def test_standby_operator_waits_then_takes_over(stack: Stack, namespace: str) -> None:
    if stack.ensure_operator():  # a fresh operator: let it take the Lease before the test
        wait_until(lambda: holder(stack) != "standby" and ready_to_lead(stack),
                   "the restarted operator to lead", timeout=60)  # fmt: skip
    # Every replica serves /metrics from the start, so the standby needs a port of its own.
    standby_metrics = free_port()
    standby = start_operator(
        stack.workdir,
        stack.operator_kubeconfig,
        node_grace_seconds=NODE_GRACE_SECONDS,
        extra=("--identity", "standby", "--metrics-port", str(standby_metrics)),
        log_name="operator-standby",
    )
    try:
        # The standby serves its metrics while it waits (not the leader yet).
        wait_until(lambda: b"wasmlet_operator_leader 0.0" in urllib.request.urlopen(
            f"http://127.0.0.1:{standby_metrics}/metrics", timeout=5).read(),
            "the standby's /metrics, leader 0", watch=[standby])  # fmt: skip
        stack.apply(namespace, wasmapp("led", stack.modules["long"], replicas=1))
        wait_until(lambda: ready(stack, namespace, "led"), "reconciled by the leader")
        assert holder(stack) != "standby"  # the standby waits while the leader lives
        # The standby has not started acting: it logs nothing of kopf.
        assert "kopf" not in standby.log_tail(200)
        os.kill(stack.operator.pid, signal.SIGKILL)
        wait_until(lambda: holder(stack) == "standby", "standby holds the lease", timeout=40)
        stack.apply(namespace, wasmapp("after", stack.modules["long"], replicas=1))
        wait_until(lambda: ready(stack, namespace, "after"), "reconciled by the new leader")
    finally:
        stack.operator.stop()
        # Later tests (and the session's Prometheus) expect the operator on the stack's own
        # metrics port: the standby makes way for a fresh operator there.
        stack.operator = standby
        stack.restart_operator()
