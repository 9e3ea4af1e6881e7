"""ClusterState: what other apps use per node, node changes that matter, readiness."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from wasmlet_operator.state import ClusterState


def placement(
    ns: str, app: str, node: str, replicas: int, memory: str = "1Mi"
) -> dict[str, object]:
    return {
        "metadata": {"namespace": ns, "name": f"{app}-{node}"},
        "spec": {"app": app, "node": node, "replicas": replicas,
                 "template": {"limits": {"memory": memory}}},
    }  # fmt: skip


def wasmnode(name: str, **status: object) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": {}}, "status": {"address": "10.0.0.1", **status}}


def test_node_views_count_other_apps_only_and_follow_changes() -> None:
    s = ClusterState(node_grace_seconds=10)
    s.set_node(wasmnode("n1"))
    s.set_placement(placement("a", "web", "n1", 3))
    s.set_placement(placement("a", "db", "n1", 2, "2Mi"))
    now = datetime.now(UTC)
    (n1,) = s.node_views(now, exclude=("a", "web"))
    assert (n1.used_instances, n1.used_memory_bytes) == (2, 4 * 1024**2)
    s.set_placement(placement("a", "db", "n1", 5, "2Mi"))  # cached totals must refresh
    (n1,) = s.node_views(now, exclude=("a", "web"))
    assert n1.used_instances == 5
    s.set_placement(placement("a", "db", "n1", 5), deleted=True)
    (n1,) = s.node_views(now, exclude=("a", "web"))
    assert n1.used_instances == 0 and not n1.ready  # no Lease yet


def test_only_changes_placement_reads_count() -> None:
    s = ClusterState(node_grace_seconds=10)
    assert s.set_node(wasmnode("n1", instances=1))
    assert not s.set_node(wasmnode("n1", instances=7))  # instance counts change often
    assert s.set_node(wasmnode("n1", instances=7, capacity={"instances": 5}))
    assert s.set_node(wasmnode("n1"), deleted=True)


def test_totals_kept_per_event_equal_a_recount() -> None:
    # Updated per placement event (not recounted per reconcile): after any sequence of
    # creates, spec changes, status-only changes and deletes they match a recount.
    rng = random.Random(7)
    s = ClusterState(node_grace_seconds=10)
    nodes = ["n1", "n2", "n3"]
    for n in nodes:
        s.set_node(wasmnode(n))
    live: dict[tuple[str, str], dict[str, object]] = {}
    for _ in range(2000):
        app, node = f"app-{rng.randrange(20)}", rng.choice(nodes)
        p = placement("a", app, node, rng.randrange(4), rng.choice(["1Mi", "3Mi"]))
        if (app, node) in live and rng.random() < 0.3:
            s.set_placement(live.pop((app, node)), deleted=True)
            continue
        if (app, node) in live and rng.random() < 0.5:  # the agent's status write
            p = {**live[(app, node)], "status": {"readyReplicas": rng.randrange(4)}}
        live[(app, node)] = p
        s.set_placement(p)
    now = datetime.now(UTC)
    for view in s.node_views(now, exclude=("a", "none")):
        mine = [p for (_, n), p in live.items() if n == view.name]
        replicas = [int(p["spec"]["replicas"]) for p in mine]  # type: ignore[index]
        memory = sum(
            r * (3 if p["spec"]["template"]["limits"]["memory"] == "3Mi" else 1) * 1024**2  # type: ignore[index]
            for r, p in zip(replicas, mine, strict=True)
        )
        assert (view.used_instances, view.used_memory_bytes) == (sum(replicas), memory)
