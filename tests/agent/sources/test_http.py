"""Modules from http(s) URLs, against a real server on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.agent.sources.conftest import FileServer
from tests.agent.sources.helpers import wasm_module
from wasmlet_agent.sources import (
    DigestMismatch,
    InvalidDigest,
    InvalidSource,
    NotFound,
    NotWasm,
    Reason,
    TooLarge,
    Unreachable,
    compute_digest,
    fetch_http,
    transport,
)
from wasmlet_dev.ports import free_port as closed_port


def test_fetch_ok(file_server: FileServer) -> None:
    module = wasm_module("http_ok")
    file_server.files["/app.wasm"] = module
    got = fetch_http(f"{file_server.url}/app.wasm", compute_digest(module))
    assert got.data == module
    assert got.digest == compute_digest(module)
    assert got.source == f"{file_server.url}/app.wasm"


def test_follows_redirect(file_server: FileServer) -> None:
    module = wasm_module("http_redirect")
    file_server.files["/real.wasm"] = module
    file_server.redirects["/latest.wasm"] = "/real.wasm"
    got = fetch_http(f"{file_server.url}/latest.wasm", compute_digest(module))
    assert got.data == module
    assert file_server.requests == ["/latest.wasm", "/real.wasm"]


def test_digest_mismatch(file_server: FileServer) -> None:
    module = wasm_module("http_mismatch")
    file_server.files["/app.wasm"] = module
    expected = compute_digest(b"what the spec pinned")
    with pytest.raises(DigestMismatch) as info:
        fetch_http(f"{file_server.url}/app.wasm", expected)
    assert info.value.expected == expected
    assert info.value.actual == compute_digest(module)
    assert info.value.reason is Reason.DIGEST_MISMATCH and not info.value.retryable


def test_not_wasm_even_when_digest_matches(file_server: FileServer) -> None:
    page = b"<html>not found</html>"
    file_server.files["/app.wasm"] = page
    with pytest.raises(NotWasm) as info:
        fetch_http(f"{file_server.url}/app.wasm", compute_digest(page))
    assert "3c 68 74 6d" in str(info.value)  # the first bytes, to recognise an HTML page


def test_not_found(file_server: FileServer) -> None:
    with pytest.raises(NotFound, match="404") as info:
        fetch_http(f"{file_server.url}/missing.wasm", compute_digest(b"x"))
    assert info.value.retryable


def test_too_large_by_content_length(file_server: FileServer) -> None:
    module = wasm_module("http_big")
    file_server.files["/big.wasm"] = module
    with pytest.raises(TooLarge, match="over the limit of 10 bytes"):
        fetch_http(f"{file_server.url}/big.wasm", compute_digest(module), max_bytes=10)


def test_too_large_without_content_length(file_server: FileServer) -> None:
    module = wasm_module("http_big_unsized")
    file_server.files["/big.wasm"] = module
    file_server.unsized.add("/big.wasm")
    with pytest.raises(TooLarge):
        fetch_http(f"{file_server.url}/big.wasm", compute_digest(module), max_bytes=10)
    # The same body within the limit arrives whole without a length header.
    got = fetch_http(f"{file_server.url}/big.wasm", compute_digest(module))
    assert got.data == module


def test_unreachable() -> None:
    port = closed_port()
    with pytest.raises(Unreachable) as info:
        fetch_http(f"http://127.0.0.1:{port}/app.wasm", compute_digest(b"x"), timeout=5)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert info.value.retryable


def test_invalid_inputs() -> None:
    with pytest.raises(InvalidDigest):
        fetch_http("http://127.0.0.1:1/app.wasm", "sha256:nothex")
    with pytest.raises(InvalidSource, match="http:// or https://"):
        fetch_http("ftp://example.com/app.wasm", compute_digest(b"x"))


def test_credentials_are_not_forwarded_across_redirects(file_server: FileServer) -> None:
    # Registries redirect blob GETs to storage elsewhere; it must not see registry credentials.
    file_server.files["/storage/blob"] = b"blob"
    file_server.redirects["/v2/x/blobs/sha256:1"] = f"{file_server.url}/storage/blob"
    resp = transport.get(
        f"{file_server.url}/v2/x/blobs/sha256:1",
        what="blob",
        limit=100,
        authorization="Bearer secret-token",
    )
    assert resp.status == 200 and resp.body == b"blob"
    assert file_server.authorization == ["Bearer secret-token", None]
