"""Objects the operator writes, built without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from wasmlet.api.revisions import revision_of, template_of
from wasmlet_operator.builders import build_endpoint_slice, build_placement, placement_name
from wasmlet_operator.leader import LeaseView, may_acquire
from wasmlet_operator.nodes import lease_fresh, node_from

APP = {"metadata": {"name": "web", "namespace": "team", "uid": "u-1"}}


def test_placement_is_owned_labelled_and_named_per_node() -> None:
    p = build_placement(APP, "node-1", 3, "rev", {"module": {}})
    assert p["metadata"]["labels"]["wasmlet.dev/app"] == "web"
    assert p["metadata"]["labels"]["wasmlet.dev/node"] == "node-1"
    owner = p["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("WasmApp", "u-1", True)
    assert p["spec"] == {
        "app": "web",
        "node": "node-1",
        "replicas": 3,
        "revision": "rev",
        "template": {"module": {}},
    }
    assert placement_name("web", "a.b") != placement_name("web.a", "b")
    assert len(placement_name("x" * 253, "n" * 253)) <= 253


def test_endpoint_slice_lists_agents_sorted() -> None:
    s = build_endpoint_slice(APP, 8080, [("n2", "10.0.0.2", False), ("n1", "10.0.0.1", True)])
    assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    assert s["addressType"] == "IPv4"
    assert [e["addresses"][0] for e in s["endpoints"]] == ["10.0.0.1", "10.0.0.2"]
    assert [e["conditions"]["ready"] for e in s["endpoints"]] == [True, False]


def test_endpoint_slice_names_loopback_agents_by_node() -> None:
    # The API server refuses loopback IPs in EndpointSlices (the local stack's agents).
    s = build_endpoint_slice(APP, 8080, [("n1", "127.0.1.1", True)])
    assert s["addressType"] == "FQDN"
    assert s["endpoints"][0]["addresses"] == ["n1.wasmlet.internal"]


def test_revision_ignores_scaling_and_placement_fields() -> None:
    spec = {"module": {"oci": {"reference": "a"}}, "replicas": 1, "env": [{"name": "A"}]}
    assert revision_of(spec) == revision_of({**spec, "replicas": 9, "nodeSelector": {"z": "1"}})
    assert revision_of(spec) != revision_of({**spec, "env": [{"name": "B"}]})
    assert "replicas" not in template_of(spec)


def test_lease_freshness() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fresh = {"renewTime": (now - timedelta(seconds=3)).isoformat()}
    stale = {"renewTime": (now - timedelta(seconds=30)).isoformat()}
    assert lease_fresh(fresh, now, grace=10)
    assert not lease_fresh(stale, now, grace=10)
    assert not lease_fresh(None, now, grace=10)


def test_node_from_wasmnode() -> None:
    n = node_from(
        {
            "metadata": {"name": "n1", "labels": {"zone": "edge"}},
            "spec": {"unschedulable": True},
            "status": {"capacity": {"instances": 50, "memory": "1Gi"}},
        },
        ready=True,
        used_instances=5,
    )
    assert (n.capacity_instances, n.capacity_memory_bytes, n.used_instances) == (50, 1024**3, 5)
    assert n.unschedulable and n.labels == {"zone": "edge"}


def test_leader_may_acquire() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    recent = now - timedelta(seconds=5)
    assert may_acquire(None, "me", now)
    assert may_acquire(LeaseView("me", recent, 15), "me", now)
    assert not may_acquire(LeaseView("other", recent, 15), "me", now)
    assert may_acquire(LeaseView("other", now - timedelta(seconds=16), 15), "me", now)
