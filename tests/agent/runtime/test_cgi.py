"""The CGI contract: pure environ/parse tables, then real round trips through C and Go guests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wasmlet_agent.runtime import InstanceSpec, LoadedModule, Outcome
from wasmlet_agent.runtime.cgi import (
    CgiOutputError,
    CgiRequest,
    CgiResponse,
    ServerInfo,
    cgi_environ,
    invoke_cgi,
    parse_cgi_output,
)
from wasmlet_agent.runtime.logs import LogBuffer

Load = Callable[[str], LoadedModule]
SERVER = ServerInfo(
    server_name="node-1", server_port=8080, remote_addr="10.0.0.7", remote_port=5555
)

# -- cgi_environ -----------------------------------------------------------------------------


def test_environ_has_the_rfc3875_variables() -> None:
    env = cgi_environ("POST", "/a/b c", "x=1&y=%20", [("Content-Type", "text/plain")], 5, SERVER)
    assert env == {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/a/b c",
        "QUERY_STRING": "x=1&y=%20",
        "REQUEST_URI": "/a/b c?x=1&y=%20",
        "SERVER_NAME": "node-1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "wasmlet",
        "REMOTE_ADDR": "10.0.0.7",
        "REMOTE_PORT": "5555",
        "CONTENT_LENGTH": "5",
        "CONTENT_TYPE": "text/plain",
    }


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("X-Request-Id", "abc")], {"HTTP_X_REQUEST_ID": "abc"}),
        ([("accept", "a"), ("Accept", "b")], {"HTTP_ACCEPT": "a, b"}),
        ([("Cookie", "a=1"), ("Cookie", "b=2")], {"HTTP_COOKIE": "a=1; b=2"}),
        ([("Host", "example.com")], {"HTTP_HOST": "example.com"}),
        ([("Authorization", "Bearer t")], {"HTTP_AUTHORIZATION": "Bearer t"}),
        ([("X-Padded", "  v  ")], {"HTTP_X_PADDED": "v"}),
        ([("Proxy", "http://evil:1")], {}),  # httpoxy
        ([("X_Forwarded_For", "1.2.3.4")], {}),  # would pose as X-Forwarded-For
        ([("Bad Header", "v")], {}),
        ([("X-Nul", "a\0b")], {}),
        ([("Content-Length", "999")], {}),  # the body length decides, not the header
    ],
)
def test_environ_header_mapping(headers: list[tuple[str, str]], expected: dict[str, str]) -> None:
    env = cgi_environ("GET", "/", "", headers, 0, ServerInfo())
    got = {k: v for k, v in env.items() if k.startswith("HTTP_") or k.startswith("CONTENT_")}
    assert got == expected


@pytest.mark.parametrize(
    ("server", "key", "value"),
    [
        (ServerInfo(https=True), "HTTPS", "on"),
        (ServerInfo(script_name="/app"), "REQUEST_URI", "/app/p?q=1"),
        (ServerInfo(), "REMOTE_PORT", None),
        (ServerInfo(), "HTTPS", None),
    ],
)
def test_environ_server_info(server: ServerInfo, key: str, value: str | None) -> None:
    assert cgi_environ("GET", "/p", "q=1", [], 0, server).get(key) == value


def test_environ_has_no_content_length_without_a_body() -> None:
    assert "CONTENT_LENGTH" not in cgi_environ("GET", "/", "", [], 0, ServerInfo())


@pytest.mark.parametrize(("method", "path", "query"), [("GET", "/a\0b", ""), ("G\0", "/", "")])
def test_environ_refuses_nul_bytes(method: str, path: str, query: str) -> None:
    with pytest.raises(ValueError, match="NUL"):
        cgi_environ(method, path, query, [], 0, ServerInfo())


# -- parse_cgi_output --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "headers", "body"),
    [
        (b"Content-Type: text/plain\r\n\r\nhi", 200, (("Content-Type", "text/plain"),), b"hi"),
        (
            b"Content-Type: text/plain\n\nhi\n\nmore",
            200,
            (("Content-Type", "text/plain"),),
            b"hi\n\nmore",
        ),
        (b"Status: 404 Not Found\nContent-Type: a/b\n\n", 404, (("Content-Type", "a/b"),), b""),
        (b"Status: 201\r\nContent-Type: a/b\r\n\r\n{}", 201, (("Content-Type", "a/b"),), b"{}"),
        (b"Location: https://x.example/\n\n", 302, (("Location", "https://x.example/"),), b""),
        (b"Status: 301 Moved\nLocation: /n\n\n", 301, (("Location", "/n"),), b""),
        (b"Status: 204 No Content\n\n", 204, (), b""),
        (
            b"Content-Type: t/p\nSet-Cookie: a=1\nSet-Cookie: b=2\nX-Empty:\n\n\x00\xff",
            200,
            (
                ("Content-Type", "t/p"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("X-Empty", ""),
            ),
            b"\x00\xff",
        ),
    ],
)
def test_parse_valid_output(
    raw: bytes, status: int, headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    assert parse_cgi_output(raw) == CgiResponse(status, headers, body)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "nothing"),
        (b"hello world", "no blank line"),
        (b"Content-Type: text/plain\r\nbody without blank line", "no blank line"),
        (b"just some text\n\nbody", "malformed header"),
        (b": no name\n\n", "malformed header"),
        (b"Bad Name: v\n\n", "malformed header"),
        (b"Status: OK\nContent-Type: a/b\n\n", "malformed Status"),
        (b"Status: 999 Nope\n\n", "malformed Status"),
        (b"X-Only: 1\n\nbody", "none of Content-Type, Location or Status"),
        ("Content-Type: t/p\nX-Name: caf\u00e9\n\n".encode(), "not ASCII"),
        (b"X-Long: " + b"a" * 70_000 + b"\n\n", "headers longer"),
        (b"X-Long: " + b"a" * 70_000, "headers longer"),
    ],
)
def test_parse_malformed_output(raw: bytes, reason: str) -> None:
    with pytest.raises(CgiOutputError, match=reason):
        parse_cgi_output(raw)


def test_response_header_lookup_ignores_case() -> None:
    response = CgiResponse(200, (("Content-Type", "a/b"),))
    assert response.header("content-type") == "a/b"
    assert response.header("X-Missing") is None


# -- invoke_cgi with real guests ----------------------------------------------------------------


def body_fields(response: CgiResponse) -> dict[str, str]:
    return dict(line.split("=", 1) for line in response.body.decode().splitlines())


@pytest.mark.parametrize("guest", ["cgi", "gohello"])
def test_get_round_trip(load: Load, guest: str) -> None:
    request = CgiRequest("GET", "/hello/world", "a=1&b=two", [("Accept", "*/*")], server=SERVER)
    response = invoke_cgi(load(guest), request)
    assert response.status == 200, response.error
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert response.header("X-Guest") == ("cgi-c" if guest == "cgi" else "cgi-go")
    assert response.header("Status") is None
    assert body_fields(response) == {
        "method": "GET",
        "path": "/hello/world",
        "query": "a=1&b=two",
        "body_length": "0",
        "body": "",
    }
    assert response.result is not None and response.result.succeeded


@pytest.mark.parametrize("guest", ["cgi", "gohello"])
def test_post_body_round_trip(load: Load, guest: str) -> None:
    body = b'{"name": "wasm", "n": 42}'
    request = CgiRequest("POST", "/items", "", [("Content-Type", "application/json")], body)
    response = invoke_cgi(load(guest), request)
    assert response.status == 200, response.error
    fields = body_fields(response)
    assert fields["method"] == "POST"
    assert fields["body_length"] == str(len(body))
    assert fields["body"] == body.decode()


@pytest.mark.parametrize("guest", ["cgi", "gohello"])
def test_large_post_body_round_trip(load: Load, guest: str) -> None:
    body = bytes(range(256)).replace(b"\n", b" ") * 4096  # 1 MiB, every byte value but LF
    response = invoke_cgi(load(guest), CgiRequest("PUT", "/blob", body=body))
    assert response.status == 200, response.error
    prefix = b"body="
    assert response.body[response.body.index(prefix) + len(prefix) : -1] == body


def test_guest_sees_headers_and_app_env_but_cgi_wins(load: Load) -> None:
    spec = InstanceSpec(env={"APP_MODE": "prod", "REQUEST_METHOD": "SPOOFED"})
    request = CgiRequest("DELETE", "/env", headers=[("X-Trace", "t-1")], server=SERVER)
    response = invoke_cgi(load("cgi"), request, spec)
    env = dict(line.split("=", 1) for line in response.body.decode().splitlines())
    assert env["APP_MODE"] == "prod"
    assert env["REQUEST_METHOD"] == "DELETE"
    assert env["HTTP_X_TRACE"] == "t-1"
    assert env["REMOTE_ADDR"] == "10.0.0.7"
    assert "CONTENT_LENGTH" not in env


def test_guest_status_is_forwarded(load: Load) -> None:
    response = invoke_cgi(load("cgi"), CgiRequest("GET", "/status/418"))
    assert response.status == 418 and response.error == ""


def test_malformed_output_gives_502(load: Load) -> None:
    response = invoke_cgi(load("cgi"), CgiRequest("GET", "/garbage"))
    assert response.status == 502
    assert "invalid CGI output" in response.error
    assert response.body == b"502 Bad Gateway\n"  # the reason stays in the logs
    assert response.result is not None and response.result.succeeded


def test_trapping_guest_gives_502(load: Load) -> None:
    response = invoke_cgi(load("trap"), CgiRequest("GET", "/"))
    assert response.status == 502
    assert "Trapped" in response.error and "unreachable" in response.error


def test_failing_guest_gives_502(load: Load) -> None:
    response = invoke_cgi(load("exit"), CgiRequest("GET", "/"), InstanceSpec(args=["1"]))
    assert response.status == 502 and "exited with code 1" in response.error


def test_slow_guest_gives_504(load: Load) -> None:
    response = invoke_cgi(load("loop"), CgiRequest("GET", "/"), InstanceSpec(timeout_seconds=0.2))
    assert response.status == 504
    assert response.result is not None and response.result.outcome is Outcome.TIMED_OUT


def test_response_over_the_cap_gives_502(load: Load) -> None:
    ok = invoke_cgi(load("cgi"), CgiRequest("GET", "/big/64"), max_response_bytes=100_000)
    assert ok.status == 200 and len(ok.body) == 64 * 1024
    big = invoke_cgi(load("cgi"), CgiRequest("GET", "/big/200"), max_response_bytes=100_000)
    assert big.status == 502 and "larger than 100000 bytes" in big.error


def test_endless_response_is_stopped_at_the_cap(load: Load) -> None:
    response = invoke_cgi(
        load("cgi"),
        CgiRequest("GET", "/flood"),
        InstanceSpec(timeout_seconds=30),
        max_response_bytes=1024 * 1024,
    )
    assert response.status == 502 and "larger than" in response.error
    assert response.result is not None
    assert response.result.outcome is Outcome.CANCELLED
    assert response.result.run_seconds < 5  # stopped by the cap, long before the timeout


def test_nul_in_path_gives_400(load: Load) -> None:
    response = invoke_cgi(load("cgi"), CgiRequest("GET", "/a\0b"))
    assert response.status == 400 and response.result is None


def test_stderr_goes_to_the_template_sink(load: Load) -> None:
    logs = LogBuffer()
    invoke_cgi(load("cgi"), CgiRequest("PATCH", "/x"), InstanceSpec(stderr=logs.sink("stderr")))
    assert [(line.stream, line.text) for line in logs.tail()] == [("stderr", "cgi: PATCH /x")]


def test_each_request_gets_a_fresh_instance(load: Load) -> None:
    first = invoke_cgi(load("cgi"), CgiRequest("POST", "/", body=b"first"))
    second = invoke_cgi(load("cgi"), CgiRequest("GET", "/"))
    assert body_fields(first)["body"] == "first"
    assert body_fields(second)["body"] == ""
