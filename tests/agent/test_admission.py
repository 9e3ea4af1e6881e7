"""refuse_over_memory(): the agent's own check of its node's memory, with placement's formula."""

from __future__ import annotations

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import free_port, wasm_app
from wasmlet.api.footprint import footprint
from wasmlet.api.placements import Reason
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


def test_a_real_agent_refuses_what_would_overfill_its_memory(
    start: StartAgent, oci: OciModule
) -> None:
    """The operator's view may be stale: the agent itself keeps within --capacity-memory, and
    says why in the placement's report (copied to the WasmApp) and an Event."""
    agent = start()
    agent.agent.memory_capacity = 1024 * MI
    port = free_port()
    # 32Mi x maxConcurrency 16 = 512Mi on this node, once, however many replicas.
    web = wasm_app("web", oci("cgi"), mode="http", http={"port": port}, replicas=2,
                   limits={"memory": "32Mi", "maxConcurrency": 16})  # fmt: skip
    ticker = wasm_app("ticker", oci("long"), replicas=2, limits={"memory": "256Mi"})
    agent.apply(web, ticker)
    agent.wait_report("web", lambda r: r.ready == 2, "serving")
    agent.wait_report("ticker", lambda r: r.ready == 2, "running: 512Mi + 512Mi fit 1Gi")
    late = wasm_app("late", oci("long"), replicas=1, limits={"memory": "64Mi"})
    agent.apply(web, ticker, late)
    rep = agent.wait_report("late", lambda r: r.problem is not None, "refused")
    assert rep.problem is not None and rep.problem[0] == Reason.INSUFFICIENT_MEMORY
    assert "needs 64Mi of memory on this node" in rep.problem[1]
    assert rep.replicas == 0 and rep.ready == 0
    assert [e.reason for e in agent.events_of("late")] == [Reason.INSUFFICIENT_MEMORY]
    # The apps it already ran keep running; scaling one down makes room.
    assert agent.report("ticker") is not None and agent.report("web") is not None
    ticker = wasm_app("ticker", oci("long"), replicas=1, limits={"memory": "256Mi"})
    agent.apply(web, ticker, late)
    agent.wait_report("late", lambda r: r.problem is None and r.ready == 1, "admitted now")
