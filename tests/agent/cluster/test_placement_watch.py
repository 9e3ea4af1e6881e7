"""From this node's placements to the desired apps (pure)."""

from __future__ import annotations

import copy
from typing import Any

from wasmlet_agent.cluster.placement_watch import (
    ParsedTemplates,
    Placements,
    desired_apps,
    desired_signature,
)

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


def test_a_template_is_parsed_again_only_when_its_generation_changes() -> None:
    parsed = ParsedTemplates()
    p = placement("p1", "web", 1, uid="u-1", generation=1)
    (first,) = desired_apps({("ns", "p1"): p}, parsed)
    status_only = {**p, "status": {"replicas": 1}}
    (again,) = desired_apps({("ns", "p1"): status_only}, parsed)
    assert again.spec is first.spec  # reused, not parsed again
    changed = copy.deepcopy(p)
    changed["metadata"]["generation"] = 2
    changed["spec"]["template"] = {"module": {"oci": {"reference": "r/m:v2"}}}
    (newer,) = desired_apps({("ns", "p1"): changed}, parsed)
    assert newer.spec is not first.spec
    assert newer.spec.module.oci is not None and newer.spec.module.oci.reference == "r/m:v2"
    desired_apps({}, parsed)  # gone placements are forgotten
    (fresh,) = desired_apps({("ns", "p1"): changed}, parsed)
    assert fresh.spec is not newer.spec


def test_signature_ignores_statuses_and_sees_what_changes_the_desired_apps() -> None:
    p = placement("p1", "web", 1, uid="u-1", generation=1)
    base = desired_signature({("ns", "p1"): p})
    assert desired_signature({("ns", "p1"): {**p, "status": {"replicas": 1}}}) == base
    newer = copy.deepcopy(p)
    newer["metadata"]["generation"] = 2
    assert desired_signature({("ns", "p1"): newer}) != base
    deleting = copy.deepcopy(p)
    deleting["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    assert desired_signature({("ns", "p1"): deleting}) != base
    recreated = copy.deepcopy(p)
    recreated["metadata"]["uid"] = "u-2"
    assert desired_signature({("ns", "p1"): recreated}) != base
    other = placement("p2", "api", 1, uid="u-3", generation=1)
    assert desired_signature({("ns", "p1"): p, ("ns", "p2"): other}) != base
    # Without a generation (not from the API server) the spec itself counts.
    bare = placement("p1", "web", 1)
    scaled = placement("p1", "web", 2)
    assert desired_signature({("ns", "p1"): bare}) != desired_signature({("ns", "p1"): scaled})
