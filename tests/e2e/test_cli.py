"""`wasmlet status` and `wasmlet logs` against the running product, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def wasmlet(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(stack.kube.kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "wasmlet.cli", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_status_and_logs(stack: Stack, namespace: str) -> None:
    stack.apply(namespace, wasmapp("chatty", stack.modules["long"], replicas=2))
    wait_until(
        lambda: (stack.app(namespace, "chatty").get("status") or {}).get("readyReplicas") == 2,
        "2 ready",
    )
    out = wasmlet(stack, "status", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert "chatty" in out.stdout and "2/2" in out.stdout and "True/InstancesReady" in out.stdout
    for node in stack.agents:
        assert node in out.stdout  # the NODES table
    assert out.stdout.count("Running") >= 2  # the INSTANCES table
    logs = wait_until(
        lambda: (
            (o := wasmlet(stack, "logs", "chatty", "-n", namespace)).returncode == 0
            and o.stdout.count("tick") >= 2
            and o
        ),
        "log lines from both instances",
    )
    nodes = {line.split()[0] for line in logs.stdout.splitlines() if "tick" in line}
    assert nodes <= set(stack.agents) and nodes
    missing = wasmlet(stack, "logs", "nope", "-n", namespace)
    assert missing.returncode == 1 and "no instances of" in missing.stderr
