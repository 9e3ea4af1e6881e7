"""Hostile clients and greedy guests against a real Agent: each is contained to its own app."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import RunningAgent, free_port, request, wait_until, wasm_app
from wasmlet_agent.config import FrontLimits
from wasmlet_agent.http_front import FrontState


def _serving(agent: RunningAgent, oci: OciModule, guest: str = "cgi", **limits: int) -> int:
    port = free_port()
    agent.apply(wasm_app("web", oci(guest), mode="http", http={"port": port}, limits=limits))
    agent.wait_report("web", lambda r: r.ready == 1, "serving")
    return port


def _state(agent: RunningAgent, app: str = "web") -> FrontState:
    """The app's counts on the node (summed over serving processes when there are some)."""
    state = agent.on_loop(lambda: agent.agent.fronts.state(("default", app)))
    assert state is not None
    return state


@contextlib.contextmanager
def _sockets(port: int, n: int, first_bytes: bytes) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            if first_bytes:
                s.sendall(first_bytes)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def _read_to_close(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def _post_head(length: int) -> bytes:
    return f"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()


def test_a_client_that_never_finishes_its_headers_is_cut_off(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start(http=FrontLimits(header_timeout=0.3))
    port = _serving(agent, oci)
    with _sockets(port, 1, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ") as (slow,):
        assert _read_to_close(slow) == b""  # closed by the agent, not by recv's 20 s timeout


def test_a_body_that_does_not_arrive_in_time_gets_408(start: StartAgent, oci: OciModule) -> None:
    agent = start(http=FrontLimits(body_timeout=0.3))
    port = _serving(agent, oci)
    with _sockets(port, 1, _post_head(100) + b"only ten b") as (slow,):
        assert _read_to_close(slow).startswith(b"HTTP/1.1 408")
    assert request(port, "/").status == 200


def test_64_slow_uploads_do_not_take_the_apps_concurrency(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start()
    port = _serving(agent, oci, maxConcurrency=64)
    with _sockets(port, 64, _post_head(100) + b"x"):
        wait_until(lambda: _state(agent).handling == 64, "64 uploads read")
        assert _state(agent).inflight == 0  # none read: none in flight
        resp = request(port, "/others")
        assert resp.status == 200


def test_connections_over_the_apps_cap_are_answered_503(start: StartAgent, oci: OciModule) -> None:
    agent = start(http=FrontLimits(max_connections=4))
    port = _serving(agent, oci)

    with _sockets(port, 4, b"") as idle:
        wait_until(lambda: _state(agent).connections == 4, "four open connections")
        with _sockets(port, 1, b"") as (extra,):
            assert _read_to_close(extra).startswith(b"HTTP/1.1 503")
        idle.pop().close()
        wait_until(lambda: _state(agent).connections == 3, "a connection closed")
        assert request(port, "/").status == 200


def test_buffered_bodies_share_one_budget(start: StartAgent, oci: OciModule) -> None:
    agent = start(http=FrontLimits(body_budget_bytes=1000))
    port = _serving(agent, oci)
    with _sockets(port, 1, _post_head(800) + b"x" * 10) as (slow,):
        wait_until(lambda: _state(agent).budget_used == 800, "800 bytes taken")
        assert request(port, "/", method="POST", body=b"y" * 300).status == 503
        slow.sendall(b"x" * 790)
        assert _read_to_close(slow).startswith(b"HTTP/1.1 200")
    wait_until(lambda: _state(agent).budget_used == 0, "the budget given back")
    assert request(port, "/", method="POST", body=b"y" * 300).status == 200


def test_one_apps_sleeping_guests_do_not_starve_another_app(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start(http=FrontLimits(workers=2))
    sleepy_port, web_port = free_port(), free_port()
    agent.apply(
        wasm_app("sleepy", oci("long"), mode="http", http={"port": sleepy_port},
                 limits={"requestTimeoutSeconds": 5, "maxConcurrency": 2}),
        wasm_app("web", oci("cgi"), mode="http", http={"port": web_port}),
    )  # fmt: skip
    agent.wait_report("sleepy", lambda r: r.ready == 1, "serving")
    agent.wait_report("web", lambda r: r.ready == 1, "serving")
    codes: list[int] = []
    held = [
        threading.Thread(target=lambda: codes.append(request(sleepy_port, "/").status))
        for _ in range(2)
    ]
    for t in held:
        t.start()
    try:
        wait_until(lambda: _state(agent, "sleepy").inflight == 2, "two sleeping guests")
        assert request(web_port, "/").status == 200
        # Served while both of the other app's workers were still busy.
        assert _state(agent, "sleepy").inflight == 2 and not codes
    finally:
        for t in held:
            t.join(30)
    assert codes == [504, 504]
