"""From this node's placements to the desired apps (pure)."""

from __future__ import annotations

from typing import Any

from wasmlet_agent.cluster.placement_watch import Placements, desired_apps

TEMPLATE = {"module": {"oci": {"reference": "r/m:v1"}}}


def placement(name: str, app: str, replicas: int, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", **meta},
        "spec": {"app": app, "revision": "abc123", "replicas": replicas, "template": TEMPLATE},
    }


def test_desired_apps_skip_deleting_and_unparseable_placements() -> None:
    bad = placement("p3", "bad", 1)
    bad["spec"]["template"] = {"module": {}}  # no source: a skewed schema
    items = {
        ("ns", "p1"): placement("p1", "web", 2),
        ("ns", "p2"): placement("p2", "gone", 1, deletionTimestamp="2026-12-01T00:00:00Z"),
        ("ns", "p3"): bad,
    }
    (only,) = desired_apps(items)
    assert (only.key, only.revision, only.replicas) == (("ns", "web"), "abc123", 2)


def test_store_keeps_written_status_and_finds_the_owner() -> None:
    store = Placements()
    p = placement("p1", "web", 1, ownerReferences=[{"uid": "u-1"}])
    store.put(p)
    store.set_status(("ns", "p1"), {"replicas": 1})
    assert store.snapshot()[("ns", "p1")]["status"] == {"replicas": 1}
    assert store.owner_uid("ns", "web") == "u-1" and store.owner_uid("ns", "other") is None
    store.delete(("ns", "p1"))
    assert store.snapshot() == {}
