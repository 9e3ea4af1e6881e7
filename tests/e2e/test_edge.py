"""Edge autonomy on the real control plane: one agent at a time is cut off from the API server
by a proxy. A partitioned agent that restarts runs its apps again from its journal; an
autonomous node's apps are not moved while it is away, a plain node's are; what changed in
the API meanwhile wins on return; a damaged journal is refused and the API used instead."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_resilience import converged, running_instances
from tests.fixtures.partition import PartitionProxy
from tests.fixtures.stack import NODE_GRACE_SECONDS, Stack, free_port, wasmapp
from wasmlet.api.constants import AUTONOMOUS_LABEL
from wasmlet_dev.cluster.stack import agent_argv, agent_get, agent_token, kubeconfig_with
from wasmlet_dev.processes import ManagedProcess
from wasmlet_dev.waits import observe_for, wait_until

pytestmark = pytest.mark.e2e

API_TIMEOUT = 2.0  # --api-timeout of the edge agents


@dataclass
class EdgeAgent:
    node: str
    address: str
    api_port: int
    proxy: PartitionProxy
    cache_dir: Path
    argv: list[str]
    log: Path
    process: ManagedProcess
    stack: Stack

    def get(self, path: str) -> tuple[int, bytes]:
        """The agent API as the stack's observer. While partitioned, the agent authorizes only
        from decisions it made in the last 5 minutes (README: The node API)."""
        return agent_get(self.stack.api, self.node, path, self.stack.observer, timeout=2)

    def restart(self) -> float:
        """Start it again; returns time.monotonic() just before the process started."""
        t0 = time.monotonic()
        self.process = ManagedProcess.start(f"agent {self.node}", self.argv, self.log)
        return t0

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        wait_until(lambda: not self.process.alive(), f"{self.node} gone")

    def apps(self) -> list[dict[str, Any]]:
        status, body = self.get("/apps")
        assert status == 200, body
        apps: list[dict[str, Any]] = json.loads(body)
        return apps

    def running(self, ns: str) -> Counter[tuple[str, str]]:
        """Running instances per (app, revision) in namespace `ns`, as this agent says."""
        out: Counter[tuple[str, str]] = Counter()
        for a in self.apps():
            if a["namespace"] == ns:
                out[(a["name"], a["revision"])] += sum(
                    1 for i in a["instances"] if i["state"] == "Running"
                )
        return +out

    def metric(self, name: str, **labels: str) -> float | None:
        _, body = self.get("/metrics")
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    def readyz(self) -> tuple[int, str]:
        status, body = self.get("/readyz")
        return status, body.decode().strip()


@pytest.fixture(scope="module")
def edge(stack: Stack) -> Iterator[dict[str, EdgeAgent]]:
    """Two more agents, each talking to the API server through its own proxy: `edge-auto`
    (an administrator labels it autonomous) and `edge-plain` (not autonomous)."""
    server = urlparse(stack.kube.endpoint.server)
    upstream = (server.hostname or "127.0.0.1", server.port or 443)
    net = stack.agents["e2e-node-1"].address.rsplit(".", 1)[0]
    agents: dict[str, EdgeAgent] = {}
    try:
        for i, node in ((11, "edge-auto"), (12, "edge-plain")):
            proxy = PartitionProxy(upstream)
            endpoint = replace(stack.kube.endpoint, server=f"https://127.0.0.1:{proxy.port}")
            kubeconfig = kubeconfig_with(
                stack.workdir / "identities" / f"{node}.kubeconfig",
                endpoint, agent_token(stack.api, node), node,
            )  # fmt: skip
            address = f"{net}.{i}"
            cache = stack.workdir / "agents" / node
            port = free_port(address)
            argv = [*agent_argv(node, address, kubeconfig, cache, {"site": node}),
                    "--api-port", str(port), "--api-timeout", str(API_TIMEOUT)]  # fmt: skip
            log = stack.workdir / "logs" / f"{node}.log"
            proc = ManagedProcess.start(f"agent {node}", argv, log)
            agents[node] = EdgeAgent(node, address, port, proxy, cache, argv, log, proc, stack)
        for node in agents:
            wait_until(lambda n=node: registered(stack, n), f"{node} registered")
        # The administrator (not the agent) marks the node autonomous.
        stack.kube.kubectl("label", "wasmnode", "edge-auto", f"{AUTONOMOUS_LABEL}=true")
        yield agents
    finally:
        for a in agents.values():
            a.process.stop()
            a.proxy.stop()
        for a in agents.values():
            stack.kube.kubectl("delete", "wasmnode", a.node, "--ignore-not-found", check=False)
            stack.kube.kubectl("delete", "lease", "-n", "wasmlet-system", a.node,
                               "--ignore-not-found", check=False)  # fmt: skip


def registered(stack: Stack, node: str) -> bool:
    obj: Any = stack.custom.get_cluster_custom_object("wasmlet.dev", "v1alpha1", "wasmnodes", node)
    return bool((obj.get("status") or {}).get("address"))


def on(node: str, name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {"replicas": replicas, "nodeSelector": {"site": node}, **spec}


def journal_holds(agent: EdgeAgent, ns: str, *apps: str) -> bool:
    try:
        doc = json.loads((agent.cache_dir / "journal" / "journal.json").read_text())
    except (OSError, ValueError):
        return False
    held = {(p["metadata"]["namespace"], p["spec"]["app"]) for p in doc["placements"]}
    return {(ns, a) for a in apps} <= held


def placements_of(stack: Stack, ns: str, app: str) -> dict[str, tuple[int, str]]:
    return {
        p["spec"]["node"]: (int(p["spec"]["replicas"]), p["spec"]["revision"])
        for p in stack.placements(ns, app)
    }


def test_partitioned_agent_restarts_from_its_journal_and_the_api_wins_on_return(
    stack: Stack, edge: dict[str, EdgeAgent], namespace: str
) -> None:
    """(a) partition + kill -9 + restart: every instance is back from the journal and the
    cache with no API access; (c) deleted and changed meanwhile: stopped and rolled."""
    a = edge["edge-auto"]
    secret = "c2VjcmV0LXZhbHVlLTQy"  # base64 of the Secret's value
    stack.kube.kubectl("create", "secret", "generic", "tok", "-n", namespace,
                       "--from-literal=t=secret-value-42")  # fmt: skip
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "t"}}}]
    long_ = stack.modules["long"]
    apps = {"keep": 3, "gone": 1, "changed": 2}
    for name, n in apps.items():
        stack.apply(namespace, wasmapp(name, long_, env=env, **on(a.node, name, n)))
    for name, n in apps.items():
        wait_until(lambda name=name, n=n: converged(stack, namespace, name, n), f"{name} ready")
    wait_until(lambda: journal_holds(a, namespace, *apps), "journal written")
    # Secrets are on the node only sealed, in private files.
    jdir = a.cache_dir / "journal"
    assert oct(jdir.stat().st_mode & 0o777) == "0o700"
    sealed = list((jdir / "secrets").iterdir())
    assert sealed and all(oct(p.stat().st_mode & 0o777) == "0o600" for p in sealed)
    assert all(secret.encode() not in p.read_bytes() for p in jdir.rglob("*") if p.is_file())
    before = a.running(namespace)
    assert sum(before.values()) == 6
    # The observer read /apps and /metrics just now: decisions the agent keeps across its
    # restart and may reuse while cut off (README: The node API).
    assert a.metric("wasmlet_agent_autonomous") == 0

    a.proxy.partition()
    a.kill()
    forwarded = a.proxy.forwarded
    started = a.restart()
    wait_until(lambda: a.running(namespace) == before,
             "every instance back from the journal", timeout=30)  # fmt: skip
    back_after = time.monotonic() - started
    assert a.proxy.forwarded == forwarded, "the agent reached the API server while partitioned"
    assert a.proxy.refused > 0  # it did try
    assert a.readyz() == (200, "autonomous")
    assert a.metric("wasmlet_agent_autonomous") == 1
    assert a.metric("wasmlet_module_cache_misses_total", kind="module") == 0
    from_journal = wait_until(lambda: a.metric(
        "wasmlet_agent_journal_restore_seconds", since="journal"), "restore measured")  # fmt: skip
    from_process = a.metric("wasmlet_agent_journal_restore_seconds", since="process")
    assert "node edge-auto is autonomous" in a.log.read_text()
    print(f"\nrestore from the journal: {from_journal * 1000:.1f} ms from reading it to all "
          f"Running (6 instances, 3 apps); {from_process or 0:.2f} s from process start "
          f"({back_after:.2f} s seen from the test, --api-timeout {API_TIMEOUT} s)")  # fmt: skip

    # Meanwhile, in the API: one app deleted, one changed (a new revision).
    stack.kube.kubectl("delete", "wasmapp", "gone", "-n", namespace)
    stack.apply(namespace, wasmapp("changed", long_, env=[*env, {"name": "V", "value": "2"}],
                                   **on(a.node, "changed", 2)))  # fmt: skip
    old_revs = {rev for (name, rev) in before if name == "changed"}
    wait_until(lambda: placements_of(stack, namespace, "changed")[a.node][1] not in old_revs,
               "new revision placed")  # fmt: skip
    new_rev = placements_of(stack, namespace, "changed")[a.node][1]
    # Still cut off, the node keeps what its journal says.
    assert a.running(namespace) == before

    a.proxy.heal()
    wanted = Counter(
        {("keep", r): 3 for (n, r) in before if n == "keep"} | {("changed", new_rev): 2}
    )
    wait_until(lambda: a.running(namespace) == wanted, "the API's set replaces the journal's",
               timeout=60)  # fmt: skip
    wait_until(lambda: a.metric("wasmlet_agent_autonomous") == 0, "back in touch")
    assert a.readyz() == (200, "ok")
    for name, n in (("keep", 3), ("changed", 2)):
        wait_until(lambda name=name, n=n: converged(stack, namespace, name, n), f"{name} converged")
    wait_until(lambda: not journal_holds(a, namespace, "gone")
             and journal_holds(a, namespace, "keep", "changed"), "journal rewritten")  # fmt: skip


def test_long_partition_moves_a_plain_nodes_apps_but_not_an_autonomous_nodes(
    stack: Stack, edge: dict[str, EdgeAgent], namespace: str
) -> None:
    """(b) one node at a time, longer than the grace period."""
    auto, plain = edge["edge-auto"], edge["edge-plain"]
    long_ = stack.modules["long"]
    stack.apply(namespace, wasmapp("stay", long_, **on(auto.node, "stay", 2)))
    # Spread over every node, the plain edge node included.
    nodes = [*stack.agents, auto.node, plain.node]
    stack.apply(namespace, wasmapp("spread", long_, replicas=len(nodes)))

    def spread_total() -> int:
        """Running instances of "spread" on every node, as the agents themselves say."""
        total = sum(running_instances(stack, namespace, "spread", list(stack.agents)).values())
        for a in (auto, plain):
            total += sum(n for (app, _), n in a.running(namespace).items() if app == "spread")
        return total

    wait_until(lambda: converged(stack, namespace, "stay", 2), "stay ready")
    wait_until(lambda: converged(stack, namespace, "spread", len(nodes)), "spread ready")
    assert set(placements_of(stack, namespace, "spread")) == set(nodes)

    # The observer looks at the plain node now: a decision it may reuse while cut off.
    assert sum(n for (app, _), n in plain.running(namespace).items() if app == "spread") == 1
    # A plain node cut off past the grace period: its instance moves.
    plain.proxy.partition()
    wait_until(
        lambda: (
            plain.node not in placements_of(stack, namespace, "spread")
            and converged(stack, namespace, "spread", len(nodes))
        ),
        "plain node's instance rescheduled",
        timeout=60,
    )
    assert sum(plain.running(namespace).values()) == 1  # it still runs it, unaware
    plain.proxy.heal()
    wait_until(lambda: not plain.running(namespace), "plain node stops what moved away")
    assert spread_total() == len(nodes)  # runs nothing extra

    # The autonomous node cut off past the grace period: nothing moves.
    layout = {app: placements_of(stack, namespace, app) for app in ("stay", "spread")}
    auto.proxy.partition()

    def unknown() -> bool:
        st = stack.app(namespace, "stay").get("status") or {}
        conds = {c["type"]: c for c in st.get("conditions") or []}
        return (
            st.get("readyReplicas") == 0
            and {"node": auto.node, "replicas": 2, "readyReplicas": 0, "nodeStatus": "Unknown"}
            in st.get("placements", [])
            and conds["Ready"]["reason"] == "NodeUnreachable"
            and auto.node in conds["Degraded"]["message"]
        )

    wait_until(unknown, "autonomous node reported Unknown", timeout=NODE_GRACE_SECONDS * 4)
    observe_for(
        NODE_GRACE_SECONDS * 2,
        lambda: {app: placements_of(stack, namespace, app) for app in layout} == layout,
        "nothing moved off the autonomous node for twice the grace period",
        interval=0.5,
    )
    assert sum(auto.running(namespace).values()) == 3  # 2 of stay + 1 of spread
    assert auto.readyz() == (200, "autonomous")
    eps: Any = stack.kube.kubectl("get", "wasmapp", "spread", "-n", namespace, "-o", "json")
    spread_status = json.loads(eps.stdout)["status"]
    assert spread_status["readyReplicas"] == len(nodes) - 1  # out of readyReplicas

    auto.proxy.heal()
    wait_until(lambda: converged(stack, namespace, "stay", 2), "stay converged again", timeout=60)
    wait_until(lambda: converged(stack, namespace, "spread", len(nodes)),
             "spread converged again", timeout=60)  # fmt: skip
    assert {app: placements_of(stack, namespace, app) for app in layout} == layout
    assert spread_total() == len(nodes)  # no duplicates anywhere
    assert auto.running(namespace).total() == 3


def test_damaged_journal_is_refused_and_the_api_used(
    stack: Stack, edge: dict[str, EdgeAgent], namespace: str
) -> None:
    """(d) a truncated journal: reported, never half-run; the API's set runs instead."""
    a = edge["edge-plain"]
    stack.apply(namespace, wasmapp("solid", stack.modules["long"], **on(a.node, "solid", 2)))
    wait_until(lambda: converged(stack, namespace, "solid", 2), "solid ready")
    wait_until(lambda: journal_holds(a, namespace, "solid"), "journal written")
    assert a.metric("wasmlet_agent_autonomous") == 0  # a recent /metrics decision to reuse
    a.kill()
    path = a.cache_dir / "journal" / "journal.json"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    a.proxy.partition()
    a.restart()
    wait_until(lambda: a.readyz()[0] in (200, 503), "agent up")
    rejected = "wasmlet_agent_journal_rejected_total"
    wait_until(lambda: a.metric(rejected, problem="Corrupt") == 1, "refusal counted")
    log = a.log.read_text()
    assert "journal refused (Corrupt)" in log and str(path) in log
    # Cut off with no usable journal: it runs nothing (observed past --api-timeout).
    observe_for(API_TIMEOUT + 2, lambda: not a.running(namespace),
                "nothing runs from a refused journal", interval=0.2)  # fmt: skip
    assert a.readyz()[0] == 503  # neither ready nor autonomous
    a.proxy.heal()
    wait_until(lambda: sum(a.running(namespace).values()) == 2, "the API's set runs", timeout=60)
    wait_until(lambda: converged(stack, namespace, "solid", 2), "solid converged")
    wait_until(lambda: journal_holds(a, namespace, "solid"), "journal rewritten")
