"""Bounded HTTP GETs whose failures become SourceErrors, shared by the registry and URL sources."""

from __future__ import annotations

import email.message
import functools
import http.client
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from wasmlet_agent.sources.base import (
    SourceError,
    TLSError,
    TooLarge,
    Unreachable,
    check_size,
)

USER_AGENT = "wasmlet-agent"
_CHUNK = 1 << 20
# Error bodies are only read for their message.
_ERROR_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    url: str
    headers: email.message.Message = field(repr=False)
    body: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def content_type(self) -> str:
        """The media type without parameters, lowercase."""
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


def host_port(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.hostname}:{parts.port or default}"


@functools.lru_cache(maxsize=16)
def ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """One shared context per CA file: building one loads the system CA bundle (~20 ms, a
    third of an agent's CPU while 1000 instances started from cache). Nothing changes a
    context after this, so sharing it between clients and threads is safe; a changed CA
    file is read again by the next agent process."""
    return ssl.create_default_context(cafile=ca_file)


def _read_bounded(resp: http.client.HTTPResponse, limit: int, what: str) -> bytes:
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit():
        check_size(int(length), limit, what)
    buf = bytearray()
    while True:
        chunk = resp.read(min(_CHUNK, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise TooLarge(
                f"{what} is over the limit of {limit} bytes; use a smaller module or raise "
                "the agent's module size limit"
            )


def get(
    url: str,
    *,
    what: str,
    limit: int,
    headers: Mapping[str, str] | None = None,
    authorization: str | None = None,
    timeout: float = 30.0,
    context: ssl.SSLContext | None = None,
    insecure_hint: str = "",
) -> Response:
    """GET `url`, following redirects; non-2xx answers are returned, not raised.

    `authorization` is never forwarded to a redirect target (blob storage elsewhere must
    not see registry credentials). Network and TLS failures raise Unreachable / TLSError.
    """
    req = urllib.request.Request(url, method="GET")
    req.add_header("User-Agent", USER_AGENT)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if authorization:
        req.add_unredirected_header("Authorization", authorization)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    where = host_port(url)
    try:
        try:
            resp = opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            body = e.read(_ERROR_BODY_LIMIT) if e.fp is not None else b""
            return Response(e.code, e.geturl() or url, e.headers, body)
        with resp:
            body = _read_bounded(resp, limit, what)
            return Response(resp.status, resp.geturl(), resp.headers, body)
    except SourceError:
        raise
    except urllib.error.URLError as e:
        raise _network_error(e.reason, what, where, insecure_hint) from e
    except (OSError, http.client.HTTPException) as e:
        raise _network_error(e, what, where, insecure_hint) from e


def _network_error(cause: object, what: str, where: str, insecure_hint: str) -> SourceError:
    if isinstance(cause, ssl.SSLError):
        text = str(cause)
        hint = (
            insecure_hint
            if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text
            else "check the server's certificate, or give the agent the CA that signed it"
        )
        return TLSError(f"TLS with {where} failed while fetching {what}: {text}; {hint}")
    if isinstance(cause, socket.gaierror):
        detail = f"cannot resolve host {where.rsplit(':', 1)[0]} ({cause.strerror})"
    elif isinstance(cause, ConnectionRefusedError):
        detail = f"connection to {where} refused"
    elif isinstance(cause, TimeoutError | socket.timeout):
        detail = f"{where} did not answer in time"
    else:
        detail = f"{where}: {cause}"
    return Unreachable(
        f"cannot reach {where} to fetch {what}: {detail}; check that the host and port are "
        "right, the server is up and the node can reach it (the agent retries with back-off)"
    )
