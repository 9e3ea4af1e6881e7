"""HTTP apps served by serving processes through a real Agent: spread, supervised, measured."""

from __future__ import annotations

import http.client
import os
import signal
import threading

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import RunningAgent, free_port, request, wait_until, wasm_app
from wasmlet_agent.http_front import FrontState


def _serving(agent: RunningAgent, oci: OciModule) -> int:
    port = free_port()
    agent.apply(wasm_app("web", oci("cgi"), mode="http", http={"port": port}))
    agent.wait_report("web", lambda r: r.ready == 1, "serving", timeout=60)
    return port


def _per_process(agent: RunningAgent) -> dict[str, float]:
    return {
        str(i): agent.metric("wasmlet_http_serving_process_requests_total", process=str(i)) or 0.0
        for i in range(2)
    }


def _pids(agent: RunningAgent) -> dict[int, int]:
    processes = agent.agent.fronts.processes
    assert processes is not None
    return agent.on_loop(processes.pids)


def test_requests_are_served_by_every_process_and_counted_once(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start(http_processes=2)
    port = _serving(agent, oci)
    # Concurrent clients: each new connection is accepted by whichever process takes it.
    codes: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        for i in range(15):
            status = request(port, f"/n/{i}").status
            with lock:
                codes.append(status)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(120)
    assert codes == [200] * 60
    per = _per_process(agent)
    assert all(n > 0 for n in per.values()), per  # both processes served
    assert sum(per.values()) == 60
    # The processes' counters and histograms appear once each, merged, in the agent's own
    # registry and its /metrics text, beside the agent's own collectors.
    assert agent.metric("wasmlet_http_requests_total", namespace="default", app="web",
                        code="200") == 60  # fmt: skip
    labels = {"namespace": "default", "app": "web"}
    assert agent.metric("wasmlet_http_request_duration_seconds_count", **labels) == 60
    text = agent.api("/metrics").text
    assert text.count("# TYPE wasmlet_http_requests_total counter") == 1
    assert text.count("# TYPE wasmlet_cold_start_seconds histogram") == 1
    assert 'wasmlet_cold_start_seconds_count{app="web",namespace="default",phase="instantiate"}' \
        ' 60.0' in text  # fmt: skip
    assert 'phase="load"' in text  # the agent's own observation, same family
    assert "process_resident_memory_bytes" in text  # the agent's, not the processes'
    assert "pid=" not in text  # no series per process id


def test_a_killed_process_is_restarted_and_reported_while_the_other_serves(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start(http_processes=2)
    port = _serving(agent, oci)
    before = _pids(agent)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    # Requests keep succeeding: the other process accepts from the same socket.
    for i in range(20):
        assert request(port, f"/during/{i}").status == 200
    wait_until(lambda: agent.metric("wasmlet_http_serving_process_restarts_total") == 1,
               "the restart counted")  # fmt: skip
    events = [e for e in agent.events_of("web") if e.reason == "ServingProcessRestarted"]
    assert len(events) == 1 and events[0].type == "Warning"
    assert f"pid {before[0]}" in events[0].message and "signal 9" in events[0].message

    def both() -> dict[int, int] | None:
        pids = _pids(agent)
        return pids if len(pids) == 2 else None

    after = wait_until(both, "process 0 started again")
    assert after[0] != before[0] and after[1] == before[1]
    # Requests keep succeeding while it starts, and it serves once it has loaded the app.
    served = _per_process(agent)["0"]
    codes: list[int] = []

    def restarted_serves() -> bool:
        codes.append(request(port, "/after").status)
        return _per_process(agent)["0"] > served

    wait_until(restarted_serves, "the restarted process to serve", timeout=30)
    assert set(codes) == {200}


def test_limits_hold_for_the_node_across_processes(start: StartAgent, oci: OciModule) -> None:
    agent = start(http_processes=2)
    port = free_port()
    agent.apply(wasm_app("spin", oci("loop"), mode="http", http={"port": port},
                         limits={"requestTimeoutSeconds": 2, "maxConcurrency": 1}))  # fmt: skip
    agent.wait_report("spin", lambda r: r.ready == 1, "serving", timeout=60)
    held: list[int] = []
    first = threading.Thread(target=lambda: held.append(request(port, "/").status))
    first.start()

    def state() -> FrontState:
        s = agent.on_loop(lambda: agent.agent.fronts.state(("default", "spin")))
        assert s is not None
        return s

    wait_until(lambda: state().inflight == 1, "one request in flight")
    # Whichever process takes them, the node's one slot is taken.
    assert [request(port, "/").status for _ in range(6)] == [503] * 6
    first.join(30)
    assert held == [504]


def test_guest_stderr_from_the_processes_reaches_the_log_in_order(
    start: StartAgent, oci: OciModule
) -> None:
    # Batched per tick in each process (serving_worker.py): none lost, and in order within
    # a process (one keep-alive connection stays on one). Across processes, lines written
    # within one tick may interleave either way.
    agent = start(http_processes=2)
    port = _serving(agent, oci)
    paths = [f"/seq/{i}" for i in range(40)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == 200
    finally:
        conn.close()
    expected = [f"cgi: GET {path}" for path in paths]

    def logged() -> list[str]:
        text = agent.api("/logs/default/web").text
        return [line for line in expected if line in text]

    wait_until(lambda: logged() == expected, "every request's stderr line", timeout=10)
    text = agent.api("/logs/default/web").text
    positions = [text.index(line + "\n") for line in expected]
    assert positions == sorted(positions)
