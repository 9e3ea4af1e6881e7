"""refuse_over_memory(): the agent's own check of its node's memory, with placement's formula."""

from __future__ import annotations

from wasmlet.api.footprint import footprint
from wasmlet_agent.admission import refuse_over_memory

MI = 1024**2


def test_running_apps_keep_their_place_newcomers_fit_in_key_order() -> None:
    http = footprint("http", 64 * MI, 16).on_node(3)  # 1Gi: maxConcurrency x memory, once
    assert http == 1024 * MI
    wanted = {("ns", "new-a"): 512 * MI, ("ns", "new-b"): 256 * MI, ("ns", "web"): http}
    refused = refuse_over_memory(wanted, running={("ns", "web")}, capacity=1536 * MI)
    assert set(refused) == {("ns", "new-b")}  # web (running) then new-a fill 1.5Gi
    assert refused[("ns", "new-b")].startswith(
        "needs 256Mi of memory on this node (limits.memory, x limits.maxConcurrency in http "
        "mode) but only 0 of its 1536Mi (--capacity-memory) is free"
    )


def test_everything_fits_and_zero_replicas_take_nothing() -> None:
    wanted = {("ns", "a"): 0, ("ns", "b"): 64 * MI}
    assert refuse_over_memory(wanted, set(), capacity=64 * MI) == {}


def test_http_counted_once_per_node_not_per_replica() -> None:
    fp = footprint("http", 64 * MI, 64)
    assert fp.on_node(1) == fp.on_node(5) == 4096 * MI
    assert refuse_over_memory({("ns", "w"): fp.on_node(5)}, set(), 4096 * MI) == {}
    assert set(refuse_over_memory({("ns", "w"): fp.on_node(5)}, set(), 4095 * MI)) == {("ns", "w")}
