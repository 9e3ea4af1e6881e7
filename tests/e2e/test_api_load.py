"""Issue 12 / issue 9: a tight restart loop of many replicas does not load the API server.

Each instance start resolves its env and volumes from a Secret; the agent reads the Secret
once, then watches it by name (README: Secrets, ConfigMaps and private modules), so the API
server's own count of Secret GETs stays at a small constant however often instances restart,
and a change to the Secret still reaches the next instance.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e

REPLICAS = 4
RESTARTS = 24  # across the replicas; each start reads the Secret for env and for a volume


def secret_gets(stack: Stack) -> float:
    """GETs of single Secrets the API server has served (its apiserver_request_total)."""
    text = stack.kube.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if (s.name == "apiserver_request_total" and s.labels.get("resource") == "secrets"
                    and s.labels.get("verb") == "GET"):  # fmt: skip
                total += s.value
    return total


def restarts(stack: Stack, ns: str, app: str) -> int:
    return sum(
        int(i.get("restarts") or 0)
        for p in stack.placements(ns, app)
        for i in (p.get("status") or {}).get("instances") or []
    )


def logs(stack: Stack, ns: str, app: str) -> str:
    out = []
    for node in stack.agents:
        code, body = stack.agent_get(node, f"/logs/{ns}/{app}?tail=200")
        if code == 200:
            out.append(body.decode())
    return "\n".join(out)


def secret(value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
            "data": {"password": base64.b64encode(value.encode()).decode()}}  # fmt: skip


def test_restart_loop_reads_each_secret_once_and_follows_changes(
    stack: Stack, namespace: str, guests: dict[str, Path]
) -> None:
    ns = namespace
    stack.apply(ns, secret("first"))
    module = stack.push(guests["files"], "e2e/files")
    nodes = len(stack.agents)
    before = secret_gets(stack)
    # `files` reads the projected Secret, prints it and exits; Always restarts it at once
    # (back-off 0.1 s doubling to 0.2 s): a restart loop of every replica.
    stack.apply(ns, wasmapp(
        "looper", module, replicas=REPLICAS, restartPolicy="Always",
        args=["read:/creds/password"],
        backoff={"initialSeconds": 0.1, "maxSeconds": 0.2},
        env=[{"name": "PASSWORD",
              "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}],
        volumes=[{"name": "creds", "secret": {"secretName": "creds"}}],
        volumeMounts=[{"name": "creds", "mountPath": "/creds"}],
    ))  # fmt: skip
    wait_until(lambda: restarts(stack, ns, "looper") >= RESTARTS,
               f"{RESTARTS} restarts of looper", timeout=90)  # fmt: skip
    wait_until(lambda: "OK read /creds/password: first" in logs(stack, ns, "looper"),
               "an instance read the Secret", timeout=30)  # fmt: skip
    starts = restarts(stack, ns, "looper") + REPLICAS
    gets = secret_gets(stack) - before
    # Once per node that runs it (env and volume share the copy); reading per start, as
    # before, would be two per start.
    assert gets <= nodes, f"{gets:g} Secret GETs for {starts} instance starts"

    # A change reaches the next instance through the watch, with no GET per restart.
    # (Server-side apply: kubectl's client-side apply would GET the Secret itself.)
    stack.kube.kubectl("apply", "--server-side", "-n", ns, "-f", "-",
                       input=yaml.safe_dump(secret("second")))  # fmt: skip
    wait_until(lambda: "OK read /creds/password: second" in logs(stack, ns, "looper"),
               "the changed Secret reached a new instance", timeout=30)  # fmt: skip
    again = restarts(stack, ns, "looper")
    wait_until(lambda: restarts(stack, ns, "looper") >= again + RESTARTS,
               f"{RESTARTS} more restarts", timeout=90)  # fmt: skip
    gets = secret_gets(stack) - before
    assert gets <= nodes, f"{gets:g} Secret GETs after the change"
