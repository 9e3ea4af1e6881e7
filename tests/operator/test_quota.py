"""quota.decide(): first come, first served; what fits is placed, the rest refused by name."""

from __future__ import annotations

import pytest

from wasmlet_operator.placement import Placement, Shortfall, refused_by_quota
from wasmlet_operator.quota import (
    AppDemand,
    Quota,
    Resource,
    Used,
    decide,
    demand_from,
    parse_memory,
    quota_from,
    status_patch,
)

MI = 1024**2


def app(name: str, created: str, replicas: int, mem: int = 64 * MI, port: int | None = None):  # type: ignore[no-untyped-def]
    return AppDemand(name, created, replicas, mem, port)


# (apps, quotas, {app: allowed}, {app: (quota, resource)} of the refused)
CASES = {
    "no quota: everything": (
        [app("a", "t1", 5)], [], {"a": 5}, {},
    ),
    "memory: first come gets all, second what fits, third nothing": (
        [app("b", "t2", 3), app("a", "t1", 2), app("c", "t3", 1)],
        [Quota("q", memory=256 * MI)],
        {"a": 2, "b": 2, "c": 0},
        {"b": ("q", Resource.MEMORY), "c": ("q", Resource.MEMORY)},
    ),
    "same creation time: by name": (
        [app("y", "t1", 2), app("x", "t1", 2)],
        [Quota("q", replicas=3)],
        {"x": 2, "y": 1},
        {"y": ("q", Resource.REPLICAS)},
    ),
    "several quotas: the tightest wins": (
        [app("a", "t1", 10)],
        [Quota("big", memory=10 * 64 * MI), Quota("small", replicas=4)],
        {"a": 4},
        {"a": ("small", Resource.REPLICAS)},
    ),
    "http ports: a new port beyond the limit places nothing, a shared port is free": (
        [
            app("web", "t1", 1, port=8080),
            app("api", "t2", 2, port=8081),
            app("web2", "t3", 1, port=8080),
        ],
        [Quota("q", http_ports=1)],
        {"web": 1, "api": 0, "web2": 1},
        {"api": ("q", Resource.HTTP_PORTS)},
    ),
    "http ports 0 forbids http apps, not command ones": (
        [app("web", "t1", 1, port=8080), app("job", "t2", 1)],
        [Quota("q", http_ports=0)],
        {"web": 0, "job": 1},
        {"web": ("q", Resource.HTTP_PORTS)},
    ),
    "an app scaled to zero takes no port": (
        [app("idle", "t1", 0, port=9000), app("web", "t2", 1, port=8080)],
        [Quota("q", http_ports=1)],
        {"idle": 0, "web": 1},
        {},
    ),
    "exactly at the limit fits": (
        [app("a", "t1", 4)], [Quota("q", memory=256 * MI, replicas=4)], {"a": 4}, {},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_decide(case: str) -> None:
    apps, quotas, allowed, refused = CASES[case]
    d = decide(apps, quotas)
    assert {name: a.allowed for name, a in d.apps.items()} == allowed
    got = {
        name: (a.refusal.quota, a.refusal.resource)
        for name, a in d.apps.items()
        if a.refusal is not None
    }
    assert got == refused


def test_used_per_quota() -> None:
    d = decide(
        [app("a", "t1", 2, port=80), app("b", "t2", 1, mem=128 * MI), app("c", "t3", 5)],
        [Quota("q", memory=512 * MI)],
    )
    assert d.apps["c"].allowed == 4
    assert d.used["q"] == Used(memory=512 * MI, http_ports=1, replicas=7)
    assert d.used["q"].as_status() == {"memory": "512Mi", "httpPorts": 1, "replicas": 7}


def test_message_names_quota_resource_used_hard_and_fix() -> None:
    d = decide([app("a", "t1", 1), app("b", "t2", 3)], [Quota("team", memory=128 * MI)])
    refusal = d.apps["b"].refusal
    assert refusal is not None
    assert refusal.message == (
        "WasmAppQuota team: 1 of 3 replicas fit; memory used 64Mi of hard 128Mi, each replica "
        "needs 64Mi (limits.memory, x limits.maxConcurrency in http mode). Lower replicas or "
        "limits, free quota in this namespace, or ask an administrator to raise "
        "spec.hard.memory"
    )
    ports = decide([app("w", "t1", 1, port=81)], [Quota("team", http_ports=0)]).apps["w"]
    assert ports.refusal is not None
    assert "httpPorts used 0 of hard 0; http.port 81" in ports.refusal.message
    assert "spec.hard.httpPorts" in ports.refusal.message


def test_is_deterministic_whatever_the_input_order() -> None:
    apps = [app(n, f"t{i % 3}", 2) for i, n in enumerate("abcdefg")]
    quotas = [Quota("q", replicas=7)]
    assert decide(apps, quotas) == decide(list(reversed(apps)), quotas)


def test_http_app_counts_memory_times_max_concurrency() -> None:
    body = {
        "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"mode": "http", "replicas": 2, "http": {"port": 8080},
                 "limits": {"memory": "2Mi", "maxConcurrency": 8}},
    }  # fmt: skip
    assert demand_from(body) == AppDemand("web", "2026-01-01T00:00:00Z", 2, 16 * MI, 8080)
    command = {"metadata": {"name": "job"}, "spec": {"replicas": 3, "limits": {"memory": "2Mi"}}}
    assert demand_from(command).memory_per_replica == 2 * MI
    assert demand_from(command).http_port is None


def test_quota_from_object_and_memory_suffixes() -> None:
    obj = {"metadata": {"name": "q"}, "spec": {"hard": {"memory": "1Ti", "httpPorts": 2}}}
    assert quota_from(obj) == Quota("q", memory=1024**4, http_ports=2, replicas=None)
    assert parse_memory("512") == 512
    with pytest.raises(ValueError, match=r"spec\.hard\.memory: '1\.5Gi' is not a quantity"):
        parse_memory("1.5Gi")


def test_status_patch_only_when_changed() -> None:
    quota = {"spec": {"hard": {"replicas": 3}}, "status": {}}
    patch = status_patch(quota, Used(replicas=2))
    assert patch == {"hard": {"replicas": 3},
                     "used": {"memory": "0", "httpPorts": 0, "replicas": 2}}  # fmt: skip
    assert status_patch({**quota, "status": patch}, Used(replicas=2)) is None


def test_refused_by_quota_reports_the_rest_as_unplaced() -> None:
    refusal = decide([app("a", "t1", 5)], [Quota("q", replicas=2)]).apps["a"].refusal
    assert refusal is not None
    p = refused_by_quota(Placement({"n1": 1, "n2": 1}), 5, refusal)
    assert (p.placed, p.unplaced, p.shortfall) == (2, 3, Shortfall.QUOTA_EXCEEDED)
    assert p.message.startswith("WasmAppQuota q: 2 of 5 replicas fit; replicas used 0 of hard 2")
