"""The `wasmtime serve` baseline's guest answers like the cgi guest, byte for byte.

Builds bench/guests/http_echo.c into a wasi:http component (bench/wasi_http.py) and serves it
with the wasmtime CLI the benchmarks use; wit-bindgen is built with cargo on first use.
"""

from __future__ import annotations

import http.client
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.common import GUEST_CACHE, find_wasmtime_cli, running
from bench.wasi_http import build_http_echo, serve_cmd, wit_bindgen
from wasmlet_dev.guests.build import GuestBuildError
from wasmlet_dev.ports import LOOPBACK, free_port
from wasmlet_dev.waits import wait_until


@dataclass(frozen=True)
class Served:
    url: str
    log: Path  # wasmtime's stdout and stderr, where the guest's stderr lines land

    def cgi_lines(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith("cgi: ")]


@pytest.fixture(scope="module")
def component() -> Path:
    try:
        return build_http_echo(GUEST_CACHE)
    except GuestBuildError as err:
        pytest.fail(f"cannot build the wasi:http guest: {err}", pytrace=False)


@pytest.fixture(scope="module")
def served(component: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    cli = find_wasmtime_cli()
    if cli.path is None:
        pytest.fail(f"no wasmtime CLI: {cli.version}", pytrace=False)
    port = free_port()
    log = tmp_path_factory.mktemp("wasmtime-serve") / "serve.log"
    with running(serve_cmd(cli.path, component, port), log) as proc:

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"wasmtime serve exited {proc.returncode}:\n{log.read_text()}")
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return True

        wait_until(listening, f"wasmtime serve on port {port}", timeout=60, retry_on=(OSError,))
        yield Served(f"http://{LOOPBACK}:{port}", log)


def _request(url: str, data: bytes | None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Status, headers (names case-insensitive: hyper sends them lowercase), body."""
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as resp:
        return resp.status, resp.headers, resp.read()


def _answers_like_the_cgi_guest(
    served: Served, method: str, target: str, body: bytes | None, expected: bytes
) -> None:
    before = served.cgi_lines()
    status, headers, got = _request(served.url + target, body)
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Guest"] == "wasi-http-c"
    assert headers["Content-Length"] == str(len(expected))
    assert got == expected
    path = target.split("?", 1)[0]
    wait_until(
        lambda: served.cgi_lines() == [*before, f"cgi: {method} {path}"],
        f"the guest's stderr line for {method} {target}",
        timeout=10,
    )


@pytest.mark.e2e
def test_get_bench_answers_the_cgi_guests_bytes(served: Served) -> None:
    expected = b"method=GET\npath=/bench\nquery=\nbody_length=0\nbody=\n"
    _answers_like_the_cgi_guest(served, "GET", "/bench", None, expected)


@pytest.mark.e2e
def test_post_echoes_the_body_and_splits_the_query(served: Served) -> None:
    body = b"hello\nworld\x00\xff" + b"x" * 10_000  # binary, and more than one 4 KiB write
    expected = b"method=POST\npath=/x\nquery=y=1\nbody_length=10013\nbody=" + body + b"\n"
    _answers_like_the_cgi_guest(served, "POST", "/x?y=1", body, expected)


@pytest.mark.e2e
def test_rebuild_is_served_from_the_cache(component: Path) -> None:
    stamp = component.stat().st_mtime_ns
    assert build_http_echo(component.parent) == component
    assert component.stat().st_mtime_ns == stamp


def test_missing_wit_bindgen_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.wasi_http.CARGO_ROOT", tmp_path / "cargo")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GuestBuildError, match=r"wit-bindgen not found.*hack/bench-deps\.sh"):
        wit_bindgen()
