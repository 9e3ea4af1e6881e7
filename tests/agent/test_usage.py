"""Live usage per app through the agent: linear memory while guests run, CPU seconds.

Real guests: `grower` allocates and touches N MiB then waits in short sleeps, `loop` spins.
"""

from __future__ import annotations

import threading

import pytest

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import NS, Response, free_port, request, wait_until, wasm_app
from wasmlet_agent.lifecycle import State

MiB = 1024 * 1024
MEMORY = "wasmlet_app_linear_memory_bytes"
CPU = "wasmlet_app_cpu_seconds_total"


def test_memory_rises_while_the_guest_runs_and_drops_after_it_exits(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start()
    # Grows 8 MiB, then stays 8 s before exiting 0; the initial memory is ~128 KiB.
    agent.apply(wasm_app("grower", oci("grower"), args=["8", "8"], restartPolicy="Never"))
    m = agent.metric

    def grown_while_running() -> bool:
        rep = agent.report("grower")
        running = rep is not None and rep.instances and rep.instances[0].state is State.RUNNING
        return bool(running) and (m(MEMORY, namespace=NS, app="grower") or 0) >= 8 * MiB

    wait_until(grown_while_running, "the live memory gauge at the grown size", timeout=20)
    rep = agent.report("grower")
    assert rep is not None and rep.instances[0].memory_bytes >= 8 * MiB  # status too
    assert rep.memory_bytes >= 8 * MiB

    rep = agent.wait_report(
        "grower", lambda r: r.instances[0].state is State.COMPLETED, "exited", timeout=30
    )
    assert rep.instances[0].memory_bytes >= 8 * MiB  # the status keeps its peak
    wait_until(lambda: m(MEMORY, namespace=NS, app="grower") == 0, "the gauge back to 0")


def test_a_spinning_guest_accrues_cpu_seconds_while_it_spins(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start()
    agent.apply(wasm_app("spinner", oci("loop")))
    agent.wait_report("spinner", lambda r: r.ready == 1, "running")

    def cpu() -> float:
        return agent.metric(CPU, namespace=NS, app="spinner") or 0.0

    wait_until(lambda: cpu() > 0.05, "CPU seconds of the spinning guest", timeout=20)
    first = cpu()
    wait_until(lambda: cpu() > first + 0.05, "more CPU seconds while it spins", timeout=20)
    rep = agent.report("spinner")
    assert rep is not None and [s.state for s in rep.instances] == [State.RUNNING]
    assert rep.instances[0].restarts == 0  # the same run, counted live, not at its end


# 0: served in the agent's process; 2: by serving processes, which publish their requests'
# memory in the shared counts and their CPU time in the merged counter.
@pytest.mark.parametrize("processes", [0, 2])
def test_an_http_request_in_flight_counts_in_the_apps_memory(
    start: StartAgent, oci: OciModule, processes: int
) -> None:
    agent = start(http_processes=processes)
    port = free_port()
    # Each request's instance grows 6 MiB and answers after 6 s.
    agent.apply(
        wasm_app(
            "slow", oci("grower"), args=["6", "6"], mode="http",
            http={"port": port}, limits={"requestTimeoutSeconds": 30},
        )
    )  # fmt: skip
    agent.wait_report("slow", lambda r: r.ready == 1, "serving")
    m = agent.metric
    assert m(MEMORY, namespace=NS, app="slow") == 0  # no request, no instance
    responses: list[Response] = []
    client = threading.Thread(target=lambda: responses.append(request(port, "/")))
    client.start()
    try:
        wait_until(
            lambda: (m(MEMORY, namespace=NS, app="slow") or 0) >= 6 * MiB,
            "the in-flight request's memory in the gauge", timeout=20,
        )  # fmt: skip
        assert client.is_alive() and not responses  # still in flight
    finally:
        client.join(60)
    assert responses[0].status == 200 and responses[0].text == "grown 6 MiB\n"
    wait_until(lambda: m(MEMORY, namespace=NS, app="slow") == 0, "the gauge back to 0")
    assert (m(CPU, namespace=NS, app="slow") or 0) > 0
