"""Graceful shutdown of a real Agent: in-flight requests finish, nothing is left running."""

from __future__ import annotations

import asyncio
import socket

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import free_port, instance_threads, request, wait_until, wasm_app


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # SO_REUSEADDR: connections may linger on the port; only a listener must be gone.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_shutdown_finishes_in_flight_requests_and_stops_everything(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start()
    port = free_port()
    agent.apply(
        wasm_app("web", oci("cgi"), mode="http", http={"port": port}),
        wasm_app("ticker", oci("long"), replicas=3),
        wasm_app("spin", oci("loop")),  # stopped mid-computation
    )
    agent.wait_report("web", lambda r: r.ready == 1, "serving")
    agent.wait_report("ticker", lambda r: r.ready == 3, "running")
    agent.wait_report("spin", lambda r: r.ready == 1, "running")
    assert len(instance_threads()) >= 4
    api_port = agent.agent.api_port

    # A slow client: headers and half the body now, the rest once shutdown has begun.
    body = b"slow upload " * 100
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    client.sendall(
        b"POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:100]
    )
    front = agent.agent.fronts.fronts[("default", "web")]
    wait_until(lambda: agent.on_loop(lambda: front.handling) == 1, "the request being read")

    shutdown = asyncio.run_coroutine_threadsafe(agent.agent.shutdown(10), agent.loop)
    wait_until(lambda: _port_is_free(port), "the listener to close", timeout=10)
    assert not shutdown.done()  # still waiting for the request
    client.sendall(body[100:])
    response = b""
    while chunk := client.recv(65536):
        response += chunk
    client.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert f"body_length={len(body)}\n".encode() in payload and body in payload

    shutdown.result(30)
    assert instance_threads() == []
    assert _port_is_free(port) and _port_is_free(api_port)
    assert not agent.agent.engine.ticking
    agent.stop()  # the harness's loop; the agent is already down


def test_removing_an_app_stops_its_instances_and_port(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    port = free_port()
    agent.apply(
        wasm_app("web", oci("cgi"), mode="http", http={"port": port}),
        wasm_app("ticker", oci("long"), replicas=2),
    )
    agent.wait_report("ticker", lambda r: r.ready == 2, "running")
    agent.wait_report("web", lambda r: r.ready == 1, "serving")
    assert request(port, "/").status == 200
    agent.apply()
    wait_until(lambda: not instance_threads(), "instance threads to end")
    assert agent.reports() == {}
    assert _port_is_free(port)
    assert agent.api("/healthz").status == 200
