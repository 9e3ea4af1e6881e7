"""HTTP requests served by a fresh Wasm instance each, over CGI/1.1 on WASI stdio.

The contract (RFC 3875, as a guest sees it):

- Request: the method, path and query arrive as REQUEST_METHOD, PATH_INFO (percent-decoded)
  and QUERY_STRING (raw); the body arrives on stdin, CONTENT_LENGTH bytes long (unset when
  there is no body) and CONTENT_TYPE from the request header. Every other request header
  `Name-Of-Header` becomes HTTP_NAME_OF_HEADER; repeated headers are joined with ", " (Cookie
  with "; "). Dropped: `Proxy` (httpoxy), names that are not HTTP tokens or that contain "_"
  (so `X_Forwarded_For` cannot pose as `X-Forwarded-For`), and values with NUL bytes. Also
  set: GATEWAY_INTERFACE=CGI/1.1, SCRIPT_NAME, REQUEST_URI, SERVER_NAME, SERVER_PORT,
  SERVER_PROTOCOL, SERVER_SOFTWARE, REMOTE_ADDR, REMOTE_PORT, HTTPS=on over TLS. The app's own
  env comes first; CGI variables override it.
- Response: the guest writes header lines to stdout (LF or CRLF), a blank line, then the
  body. At least one of Content-Type, Location or Status is required. `Status: NNN reason`
  sets the status (default 200, or 302 when only Location is given: local redirects are not
  followed); it is not forwarded. stderr goes to the app's logs.
- Failures: output that breaks these rules, a guest that traps, exits non-zero, runs out of
  memory or fuel, or writes more than the response cap gives 502; a timeout gives 504. The
  reason is in CgiResponse.error (for logs), not in the body sent to the client.

One instance serves one request: no state survives between requests, as with classic CGI.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wasmlet_agent.runtime.instances import (
    Cancel,
    InstanceResult,
    InstanceSpec,
    Outcome,
    run_instance,
)
from wasmlet_agent.runtime.modules import LoadedModule
from wasmlet_agent.runtime.usage import Usage

DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_STDERR_BYTES = 1024 * 1024  # per request; more stops the guest (it would only fill logs)

_TOKEN = re.compile(r"^[!#$%&'*+\-.^`|~0-9A-Za-z]+$")
_STATUS = re.compile(r"^([1-5][0-9][0-9])(?:\s+(.*))?$")


class CgiOutputError(ValueError):
    """The guest's stdout is not a valid CGI response."""


@dataclass(frozen=True)
class ServerInfo:
    """Where the request came in and from whom."""

    server_name: str = "localhost"
    server_port: int = 80
    remote_addr: str = ""
    remote_port: int | None = None
    script_name: str = ""
    protocol: str = "HTTP/1.1"
    software: str = "wasmlet"
    https: bool = False


@dataclass(frozen=True)
class CgiRequest:
    method: str
    path: str = "/"  # percent-decoded
    query: str = ""  # raw, without "?"
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    server: ServerInfo = field(default_factory=ServerInfo)


@dataclass(frozen=True)
class CgiResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    error: str = ""  # why the agent answered for the guest (empty when the guest answered)
    result: InstanceResult | None = None  # how the instance ended, for logs and metrics

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


def cgi_environ(
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    body_len: int,
    server: ServerInfo,
) -> dict[str, str]:
    """The CGI meta-variables for one request (pure). ValueError on NUL in method/path/query."""
    for name, value in (("method", method), ("path", path), ("query", query)):
        if "\0" in value:
            raise ValueError(f"request {name} contains a NUL byte")
    env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": server.script_name,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REQUEST_URI": server.script_name + path + (f"?{query}" if query else ""),
        "SERVER_NAME": server.server_name,
        "SERVER_PORT": str(server.server_port),
        "SERVER_PROTOCOL": server.protocol,
        "SERVER_SOFTWARE": server.software,
        "REMOTE_ADDR": server.remote_addr,
    }
    if server.remote_port is not None:
        env["REMOTE_PORT"] = str(server.remote_port)
    if server.https:
        env["HTTPS"] = "on"
    if body_len > 0:
        env["CONTENT_LENGTH"] = str(body_len)
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        if not _TOKEN.match(name) or "_" in name or "\0" in value:
            continue
        key = name.upper().replace("-", "_")
        if key == "PROXY" or key == "CONTENT_LENGTH":
            continue
        joined.setdefault(key, []).append(value.strip())
    for key, values in joined.items():
        sep = "; " if key == "COOKIE" else ", "
        env["CONTENT_TYPE" if key == "CONTENT_TYPE" else f"HTTP_{key}"] = sep.join(values)
    return env


def parse_cgi_output(data: bytes) -> CgiResponse:
    """Split a guest's stdout into status, headers and body (pure). Raises CgiOutputError."""
    if not data:
        raise CgiOutputError("the guest wrote nothing to stdout")
    headers: list[tuple[str, str]] = []
    status: int | None = None
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0 or end > MAX_HEADER_BYTES:
            if end < 0 and len(data) <= MAX_HEADER_BYTES:
                raise CgiOutputError("no blank line after the headers")
            raise CgiOutputError(f"headers longer than {MAX_HEADER_BYTES} bytes")
        line = data[pos:end].removesuffix(b"\r")
        pos = end + 1
        if not line:
            break
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise CgiOutputError(f"header line is not ASCII: {line[:80]!r}") from None
        name, colon, value = text.partition(":")
        if not colon or not _TOKEN.match(name):
            raise CgiOutputError(f"malformed header line: {text[:80]!r}")
        value = value.strip()
        if name.lower() == "status":
            match = _STATUS.match(value)
            if match is None:
                raise CgiOutputError(f"malformed Status header: {value[:80]!r}")
            status = int(match.group(1))
            continue
        headers.append((name, value))
    names = {name.lower() for name, _ in headers}
    if status is None:
        if "location" in names:
            status = 302
        elif "content-type" in names:
            status = 200
        else:
            raise CgiOutputError("the response has none of Content-Type, Location or Status")
    return CgiResponse(status, tuple(headers), bytes(data[pos:]))


def _agent_response(status: int, error: str, result: InstanceResult | None) -> CgiResponse:
    reason = {400: "Bad Request", 502: "Bad Gateway", 504: "Gateway Timeout"}[status]
    return CgiResponse(
        status,
        (("Content-Type", "text/plain; charset=utf-8"),),
        f"{status} {reason}\n".encode(),
        error=error,
        result=result,
    )


class _OutputCap(Cancel):
    """Stops a guest whose response outgrows the cap, checked every epoch tick."""

    check_ticks = 1

    def __init__(self, fd: int, max_bytes: int, err_fd: int | None = None) -> None:
        super().__init__()
        self.fd = fd
        self.err_fd = err_fd
        self.max_bytes = max_bytes
        self.exceeded = False

    def should_stop(self) -> bool:
        if not self.exceeded and os.fstat(self.fd).st_size > self.max_bytes:
            self.exceeded = True
            self.cancel(f"the response is larger than {self.max_bytes} bytes")
        if (
            not self.exceeded
            and self.err_fd is not None
            and os.fstat(self.err_fd).st_size > MAX_STDERR_BYTES
        ):
            self.exceeded = True
            self.cancel(f"the guest wrote more than {MAX_STDERR_BYTES} bytes to stderr")
        return super().should_stop()


def _memfd(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return fd


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, pos = [], 0
    while pos < size:
        chunk = os.pread(fd, size - pos, pos)
        if not chunk:
            break
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def invoke_cgi(
    module: LoadedModule,
    request: CgiRequest,
    spec: InstanceSpec | None = None,
    *,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    usage: Usage | None = None,
) -> CgiResponse:
    """Serve `request` with a fresh instance of `module`; blocks, so call from a worker thread.

    `spec` is the app's instance template (args, env, preopens, limits, stderr); its stdin and
    stdout are replaced by the request body and the response. Both live in memfds, reached by
    wasmtime through /proc/self/fd: a file is ~2x faster per request than a stdout callback,
    which wasmtime runs on another thread. `usage` is passed on to run_instance.
    """
    base = spec or InstanceSpec()
    try:
        env = cgi_environ(
            request.method,
            request.path,
            request.query,
            request.headers,
            len(request.body),
            request.server,
        )
    except ValueError as err:
        return _agent_response(400, str(err), None)
    fds: list[int] = []
    try:
        stdin_path = None
        if request.body:
            fds.append(_memfd("wasmlet-cgi-stdin", request.body))
            stdin_path = f"/proc/self/fd/{fds[-1]}"
        fds.append(_memfd("wasmlet-cgi-stdout"))
        out_fd = fds[-1]
        # stderr to a memfd too, handed to the sink once after the run: a sink is a Python
        # callback on wasmtime's I/O thread, which costs about as much as the instance itself.
        err_fd = None
        if base.stderr is not None and base.stderr_path is None:
            fds.append(_memfd("wasmlet-cgi-stderr"))
            err_fd = fds[-1]
        cap = _OutputCap(out_fd, max_response_bytes, err_fd)
        instance_spec = dataclasses.replace(
            base,
            env={**base.env, **env},
            stdin_path=stdin_path,
            stdout=None,
            stdout_path=f"/proc/self/fd/{out_fd}",
        )
        if err_fd is not None:
            instance_spec = dataclasses.replace(
                instance_spec, stderr=None, stderr_path=f"/proc/self/fd/{err_fd}"
            )
        result = run_instance(module, instance_spec, cap, usage)
        if err_fd is not None and base.stderr is not None:
            errors = _read_all(err_fd)[:MAX_STDERR_BYTES]
            if errors:
                base.stderr(errors)
        too_large = cap.exceeded or os.fstat(out_fd).st_size > max_response_bytes
        output = b"" if too_large else _read_all(out_fd)
    finally:
        for fd in fds:
            os.close(fd)

    if too_large:
        return _agent_response(
            502, f"the response is larger than {max_response_bytes} bytes", result
        )
    if result.outcome is Outcome.TIMED_OUT:
        return _agent_response(504, f"the guest timed out: {result.message}", result)
    if result.outcome is not Outcome.EXITED:
        return _agent_response(502, f"the guest {result.outcome}: {result.message}", result)
    if result.exit_code != 0:
        return _agent_response(502, f"the guest exited with code {result.exit_code}", result)
    try:
        response = parse_cgi_output(output)
    except CgiOutputError as err:
        return _agent_response(502, f"invalid CGI output: {err}", result)
    return dataclasses.replace(response, result=result)
