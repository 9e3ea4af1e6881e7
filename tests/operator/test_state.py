"""ClusterState: what other apps use per node, node changes that matter, readiness."""

from __future__ import annotations

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
