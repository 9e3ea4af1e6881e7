"""Reading a node agent's API as a caller: TLS pinned to the node's certificate, a bearer token."""

from __future__ import annotations

import contextlib
import http.client
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from kubernetes import client


def pinned_context(pem: str) -> ssl.SSLContext:
    """Trusts exactly `pem` (the WasmNode's status.servingCertificate), self-signed or not."""
    ctx = ssl.create_default_context(cadata=pem)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned leaf is its own anchor
    return ctx


def bearer_of(api: client.ApiClient) -> str | None:
    """The bearer token of the kubeconfig `api` was made from (None for client certificates)."""
    conf: Any = api.configuration
    value = (conf.api_key or {}).get("authorization") or (conf.api_key or {}).get("BearerToken")
    if not value:
        return None
    prefix = (conf.api_key_prefix or {}).get("authorization", "")
    text = f"{prefix} {value}".strip() if prefix else str(value)
    return text.removeprefix("Bearer ").strip() or None


def agent_url(node_status: dict[str, Any]) -> str:
    """Base URL of the agent API from a WasmNode's status."""
    return f"https://{node_status['address']}:{node_status['agentPort']}"


def get(url: str, *, token: str | None, pem: str | None, timeout: float = 10) -> tuple[int, bytes]:
    """GET `url` over TLS pinned to `pem` (None: the system's CAs), presenting `token`."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = pinned_context(pem) if pem else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@contextlib.contextmanager
def stream(
    url: str, *, token: str | None, pem: str | None, connect_timeout: float = 10
) -> Iterator[tuple[int, http.client.HTTPResponse]]:
    """GET `url` and yield (status, response) to read as it arrives (a followed log): the
    timeout covers connecting and the headers; then reads wait as long as the stream lasts."""
    parts = urllib.parse.urlsplit(url)
    ctx = pinned_context(pem) if pem else ssl.create_default_context()
    conn = http.client.HTTPSConnection(
        parts.hostname or "", parts.port, timeout=connect_timeout, context=ctx
    )
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", f"{parts.path}?{parts.query}", headers=headers)
        resp = conn.getresponse()
        if conn.sock is not None:
            conn.sock.settimeout(None)
        yield resp.status, resp
    finally:
        conn.close()
