"""Modules served at an http(s) URL: trusted only through the sha256 digest the spec pins."""

from __future__ import annotations

import urllib.parse

from wasmlet_agent.sources import transport
from wasmlet_agent.sources.base import (
    DEFAULT_MAX_MODULE_BYTES,
    InvalidSource,
    ModuleBytes,
    NotFound,
    ServerError,
    SourceError,
    Unauthorized,
    check_wasm,
)
from wasmlet_agent.sources.digests import parse_digest, verify_digest


def fetch_http(
    url: str,
    digest: str,
    *,
    max_bytes: int = DEFAULT_MAX_MODULE_BYTES,
    timeout: float = 30.0,
    ca_file: str | None = None,
) -> ModuleBytes:
    """Download `url`, refuse it unless its sha256 equals `digest` and it is Wasm."""
    digest = parse_digest(digest, "spec.module.digest")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSource(
            f"module URL {url!r} is not an absolute http:// or https:// URL; "
            "set spec.module.http.url to e.g. https://example.com/app.wasm"
        )
    what = f"module {url}"
    resp = transport.get(
        url,
        what=what,
        limit=max_bytes,
        timeout=timeout,
        context=transport.ssl_context(ca_file) if parts.scheme == "https" else None,
        insecure_hint="the server may speak plain HTTP: use an http:// URL",
    )
    if resp.status != 200:
        raise _status_error(resp, url)
    verify_digest(resp.body, digest, what)
    check_wasm(resp.body, what)
    return ModuleBytes(resp.body, digest, url)


def _status_error(resp: transport.Response, url: str) -> SourceError:
    where = transport.host_port(url)
    if resp.status == 404 or resp.status == 410:
        return NotFound(
            f"{url} answered {resp.status}: no module there; check spec.module.http.url"
        )
    if resp.status in (401, 403):
        return Unauthorized(
            f"{url} answered {resp.status}: the server refuses anonymous downloads; serve the "
            "module without authentication or use an OCI registry with a pullSecret"
        )
    detail = resp.body[:200].decode("utf-8", "replace").strip()
    return ServerError(
        f"{where} answered {resp.status} for {url}"
        + (f": {detail}" if detail else "")
        + "; the agent retries with back-off"
    )
