"""HTTP-mode apps through a real Agent: an instance per request, limits, port conflicts."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import NS, RunningAgent, free_port, request, wait_until, wasm_app
from wasmlet_agent.apps import DesiredApp


def _instantiations(agent: RunningAgent, app: str) -> float:
    n = agent.metric("wasmlet_cold_start_seconds_count", namespace=NS, app=app, phase="instantiate")
    return n or 0.0


@pytest.mark.parametrize(("guest", "tag"), [("cgi", "cgi-c"), ("gohello", "cgi-go")])
def test_each_request_gets_a_fresh_instance(
    start: StartAgent, oci: OciModule, guest: str, tag: str
) -> None:
    agent = start()
    port = free_port()
    agent.apply(wasm_app("web", oci(guest), mode="http", http={"port": port}, replicas=2))
    rep = agent.wait_report("web", lambda r: r.ready == 2, "serving", timeout=60)
    assert rep.problem is None and rep.digest is not None
    before = _instantiations(agent, "web")

    # PATH_INFO is percent-decoded once; QUERY_STRING is passed as sent.
    resp = request(port, "/hello/a%2520b?x=1&y=%20z")
    assert resp.status == 200
    assert resp.headers["x-guest"] == tag
    assert resp.headers["content-type"].startswith("text/plain")
    assert "method=GET\npath=/hello/a%20b\nquery=x=1&y=%20z\nbody_length=0\n" in resp.text

    body = bytes(range(1, 256)).replace(b"\n", b"") * 40
    resp = request(port, "/echo", method="POST", body=body)
    assert resp.status == 200
    assert f"method=POST\npath=/echo\nquery=\nbody_length={len(body)}\n".encode() in resp.body
    assert body in resp.body

    for i in range(3):
        assert request(port, f"/n/{i}").status == 200
    # Five requests, five instances: nothing is shared between requests.
    assert _instantiations(agent, "web") - before == 5
    served = agent.metric("wasmlet_http_requests_total", namespace="default", app="web", code="200")
    assert served == 5


def test_guest_chosen_status_and_bad_output(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    port = free_port()
    agent.apply(wasm_app("web", oci("cgi"), mode="http", http={"port": port}))
    agent.wait_report("web", lambda r: r.ready == 1, "serving")
    assert request(port, "/status/418").status == 418
    assert request(port, "/garbage").status == 502
    # The guest's stderr is the app's log.
    wait_until(lambda: "cgi: GET /garbage" in agent.api("/logs/default/web").text, "cgi log")


def test_concurrency_limit_and_request_timeout_keep_the_agent_healthy(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start()
    spin_port, web_port = free_port(), free_port()
    agent.apply(
        wasm_app(
            "spin",
            oci("loop"),
            mode="http",
            http={"port": spin_port},
            limits={"requestTimeoutSeconds": 1, "maxConcurrency": 1},
        ),
        wasm_app("web", oci("cgi"), mode="http", http={"port": web_port}),
    )
    agent.wait_report("spin", lambda r: r.ready == 1, "serving")
    agent.wait_report("web", lambda r: r.ready == 1, "serving")

    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(request(spin_port, "/").status))
    first.start()

    def inflight() -> int:
        state = agent.agent.fronts.state(("default", "spin"))
        return state.inflight if state is not None else -1

    wait_until(lambda: agent.on_loop(inflight) == 1, "the first request in flight")
    # The one slot is taken: the next request is refused at once, not queued.
    refused = request(spin_port, "/")
    assert refused.status == 503 and refused.headers.get("retry-after") == "1"
    # Meanwhile the other app and the agent answer.
    assert request(web_port, "/during").status == 200
    assert agent.api("/healthz").status == 200
    first.join(30)
    assert results == [504]  # the spinning guest was stopped at requestTimeoutSeconds
    assert request(web_port, "/after").status == 200
    assert (
        agent.metric("wasmlet_http_requests_total", namespace="default", app="spin", code="504")
        == 1
    )
    assert (
        agent.metric("wasmlet_http_requests_total", namespace="default", app="spin", code="503")
        == 1
    )


def test_taken_port_is_reported_and_recovered(start: StartAgent, oci: OciModule) -> None:
    agent = start(port_retry_seconds=0.2)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        agent.apply(wasm_app("web", oci("cgi"), mode="http", http={"port": port}))
        rep = agent.wait_report("web", lambda r: r.problem is not None, "a port problem")
        assert rep.problem is not None
        reason, message = rep.problem
        assert reason == "PortConflict" and f"spec.http.port {port}" in message
        assert rep.ready == 0
        events = [e for e in agent.events_of("web") if e.reason == "PortConflict"]
        assert len(events) == 1 and events[0].type == "Warning"
    finally:
        squatter.close()
    rep = agent.wait_report(
        "web", lambda r: r.problem is None and r.ready == 1, "serving once the port is free"
    )
    assert request(port, "/").status == 200


def test_app_not_ready_answers_503(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    port = free_port()
    broken = wasm_app(
        "web",
        {"configMap": {"name": "absent", "key": "m.wasm"}},
        mode="http",
        http={"port": port},
        backoff={"initialSeconds": 0.1, "maxSeconds": 1},
    )
    agent.apply(broken)
    rep = agent.wait_report("web", lambda r: r.problem is not None, "a load problem")
    assert rep.problem is not None and rep.problem[0] == "InvalidSource"
    resp = request(port, "/")
    assert resp.status == 503
    # Fixing the app (a new revision) makes the same port serve.
    agent.apply(wasm_app("web", oci("cgi"), mode="http", http={"port": port}))
    agent.wait_report("web", lambda r: r.ready == 1 and r.problem is None, "serving")
    assert request(port, "/").status == 200


def test_new_revision_takes_over_without_failed_requests(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    port = free_port()

    def version(v: str) -> DesiredApp:
        env = [{"name": "VERSION", "value": v}]
        return wasm_app("web", oci("cgi"), mode="http", http={"port": port}, env=env)

    agent.apply(version("1"))
    agent.wait_report("web", lambda r: r.ready == 1, "serving")
    assert "VERSION=1" in request(port, "/env").text.splitlines()
    agent.apply(version("2"))
    seen: list[str] = []
    while "VERSION=2" not in seen:
        resp = request(port, "/env")
        assert resp.status == 200, resp
        seen.extend(x for x in resp.text.splitlines() if x.startswith("VERSION="))
    rep = agent.wait_report("web", lambda r: r.replicas == 1, "the old revision gone")
    assert rep.revision == version("2").revision and rep.updated == 1
