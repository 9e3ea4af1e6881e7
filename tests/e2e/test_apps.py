"""The product as users meet it: apply, place, serve, scale, update, delete."""

from __future__ import annotations

import json
import socket
from collections import Counter
from typing import Any

import pytest

from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.cluster.stack import http_get
from wasmlet_dev.ports import free_port
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def ready_count(stack: Stack, ns: str, name: str) -> int:
    return int((stack.app(ns, name).get("status") or {}).get("readyReplicas") or 0)


def condition(app: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (app.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def port_closed(address: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((address, port)) != 0


def spread(stack: Stack, ns: str, name: str) -> dict[str, int]:
    return {p["spec"]["node"]: p["spec"]["replicas"] for p in stack.placements(ns, name)}


def test_http_app_becomes_ready_spread_and_serves(stack: Stack, namespace: str) -> None:
    addresses = [a.address for a in stack.agents.values()]
    port = free_port(addresses[0])
    stack.apply(
        namespace,
        wasmapp("web", stack.modules["cgi"], mode="http", replicas=3, http={"port": port}),
    )
    app = wait_until(
        lambda: (
            condition(stack.app(namespace, "web"), "Ready").get("status") == "True"
            and stack.app(namespace, "web")
        ),
        "web Ready",
    )
    status = app["status"]
    assert status["readyReplicas"] == 3 and status["ready"] == "3/3"
    assert status["observedGeneration"] == app["metadata"]["generation"]
    assert status["selector"] == "wasmlet.dev/app=web"
    assert "@sha256:" in status["module"]
    assert sorted(spread(stack, namespace, "web").values()) == [1, 1, 1]
    # Every agent that runs it answers on its own address, one fresh instance per request.
    assert len(status["endpoints"]) == 3
    for endpoint in status["endpoints"]:
        code, body = http_get(f"http://{endpoint}/hello?x=1")
        assert code == 200 and b"path=/hello" in body and b"query=x=1" in body
    # The operator keeps a Service and an EndpointSlice naming the agents.
    svc = json.loads(stack.kube.kubectl("get", "svc", "web", "-n", namespace, "-o", "json").stdout)
    assert svc["spec"]["ports"][0]["port"] == port
    slices = json.loads(
        stack.kube.kubectl(
            "get", "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=web",
            "-o", "json",
        ).stdout
    )  # fmt: skip
    hostnames = {e["hostname"] for s in slices["items"] for e in s["endpoints"]}
    assert hostnames == set(stack.agents)


def test_scale_up_spreads_and_scale_to_zero_stops_everything(stack: Stack, namespace: str) -> None:
    stack.apply(namespace, wasmapp("ticker", stack.modules["long"], replicas=1))
    wait_until(lambda: ready_count(stack, namespace, "ticker") == 1, "1 ready")
    stack.kube.kubectl("scale", "wasmapp/ticker", "-n", namespace, "--replicas=10")
    wait_until(lambda: ready_count(stack, namespace, "ticker") == 10, "10 ready", timeout=60)
    counts = spread(stack, namespace, "ticker")
    assert sum(counts.values()) == 10 and min(counts.values()) >= 3 and len(counts) == 3
    # The agents agree: instances really run, spread the same way.
    running = Counter()
    for node in stack.agents:
        for a in stack.agent_apps(node):
            if a["name"] == "ticker" and a["namespace"] == namespace:
                running[node] += sum(1 for i in a["instances"] if i["state"] == "Running")
    assert dict(running) == counts
    stack.kube.kubectl("scale", "wasmapp/ticker", "-n", namespace, "--replicas=0")
    wait_until(lambda: stack.placements(namespace, "ticker") == [], "no placements")
    wait_until(
        lambda: all(
            not any(
                a["name"] == "ticker" and a["namespace"] == namespace for a in stack.agent_apps(n)
            )
            for n in stack.agents
        ),
        "no instances on any agent",
    )
    app = stack.app(namespace, "ticker")
    assert app["status"]["ready"] == "0/0"
    assert condition(app, "Ready")["status"] == "True"


def test_describe_shows_conditions_and_events(stack: Stack, namespace: str) -> None:
    stack.apply(namespace, wasmapp("described", stack.modules["long"], replicas=2))
    wait_until(lambda: ready_count(stack, namespace, "described") == 2, "2 ready")
    out = wait_until(
        lambda: (
            (o := stack.kube.kubectl("describe", "wasmapp", "described", "-n", namespace).stdout)
            and "Scheduled" in o
            and "Started" in o
            and "Pulled" in o
            and o
        ),
        "events in describe",
    )
    for text in ("Ready", "Progressing", "Degraded", "InstancesReady"):
        assert text in out
    # The operator's Events name it, not kopf (kubectl describe's From column).
    events = json.loads(
        stack.kube.kubectl(
            "get", "events", "-n", namespace, "-o", "json",
            "--field-selector", "involvedObject.name=described,reason=Ready",
        ).stdout
    )["items"]  # fmt: skip
    assert events and all(e["source"]["component"] == "wasmlet-operator" for e in events)
    assert all(e["reportingComponent"] == "wasmlet-operator" for e in events)


def test_delete_stops_every_instance_and_leaves_nothing(stack: Stack, namespace: str) -> None:
    port = free_port(next(iter(stack.agents.values())).address)
    stack.apply(
        namespace,
        wasmapp("gone", stack.modules["cgi"], mode="http", replicas=3, http={"port": port}),
    )
    wait_until(lambda: ready_count(stack, namespace, "gone") == 3, "3 ready")
    stack.kube.kubectl("delete", "wasmapp", "gone", "-n", namespace, "--wait=true")
    for kind in ("wasmplacements", "services", "endpointslices"):
        wait_until(
            lambda k=kind: (
                stack.kube.kubectl(
                    "get", k, "-n", namespace, "-l", "wasmlet.dev/app=gone", "-o", "name"
                ).stdout.strip()
                == ""
            ),
            f"no {kind} left",
        )
    for node, agent in stack.agents.items():
        wait_until(
            lambda n=node: not any(a["name"] == "gone" for a in stack.agent_apps(n)),
            f"{node} runs nothing of gone",
        )
        wait_until(lambda a=agent: port_closed(a.address, port), f"{node} stopped serving")
    # The module cache keeps the module for the next app that needs it.
    blobs = list(stack.workdir.glob("agents/*/modules/blobs/sha256/*"))
    assert blobs, "the module cache lost its modules"
