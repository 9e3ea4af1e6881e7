"""Serving HTTP apps: a listener per app on spec.http.port, and the set of them on this node.

Every request is run by a fresh instance on a worker thread, never on the event loop. Hostile
clients are contained per app: a request's headers must arrive within `header_timeout` of
the connection (or of the previous response), its body within `body_timeout`; an app holds
at most `max_connections` open connections; a request counts against maxConcurrency only
once it has been read, and its worker slot is freed when the worker really ends (a guest
stuck in a host call past its timeout still holds it); each app has workers of its own, so
one app's sleeping guests cannot starve another's; buffered bodies share a node budget.

Long (~560 lines) on purpose: each defence above is a few lines in the one request path, and
split across modules they would hide the order a request meets them in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from wasmlet.api.constants import Mode
from wasmlet.api.placements import Reason
from wasmlet_agent.apps import Apps, DesiredApp
from wasmlet_agent.config import FrontLimits
from wasmlet_agent.metrics import RequestMetrics
from wasmlet_agent.revision import AppKey, EventSink
from wasmlet_agent.runtime.cgi import CgiRequest, CgiResponse, ServerInfo
from wasmlet_agent.runtime.instances import InstanceSpec
from wasmlet_agent.runtime.modules import LoadedModule
from wasmlet_agent.serving_counters import NODE_SLOT, Field, Peers
from wasmlet_agent.serving_processes import ServingProcesses

log = logging.getLogger("wasmlet.agent")

# Framing is the agent's job, not the guest's: these response headers are not forwarded.
_HOP_BY_HOP = frozenset(
    {"connection", "content-length", "keep-alive", "transfer-encoding", "upgrade", "te",
     "trailer", "proxy-connection"}
)  # fmt: skip


class _Limits(Protocol):
    @property
    def max_concurrency(self) -> int: ...
    @property
    def request_timeout_seconds(self) -> float: ...


class _Spec(Protocol):
    @property
    def limits(self) -> _Limits: ...


class ServingRevision(Protocol):
    """What a front needs of a revision: the agent's HttpRevision, or a serving process's."""

    @property
    def spec(self) -> _Spec: ...
    def serving(self) -> tuple[LoadedModule, InstanceSpec] | None: ...
    def refusal(self) -> tuple[int, str] | None:
        """(HTTP status, body) while the revision refuses requests for a reason of its own."""

    def invoke(
        self, module: LoadedModule, request: CgiRequest, template: InstanceSpec
    ) -> CgiResponse:
        """Serve one request with a fresh instance (blocks: a worker thread)."""


class Revisions(Protocol):
    def http_revision(self, key: AppKey) -> ServingRevision | None: ...


class BodyBudget:
    """Bytes of request bodies buffered at once on this node, across every app."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.used = max_bytes, 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.max_bytes:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 29\r\n\r\n"
    b"too many connections to app\r\n"
)


class _Refuse(asyncio.Protocol):
    """A connection over the app's cap: one 503, then closed, never parsed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSAL)
        transport.close()


def _too_large(limit: int) -> web.Response:
    return web.Response(status=413, text=f"request body larger than {limit} bytes\n")


class HttpFront:
    """One HTTP app's listener on this node."""

    def __init__(
        self,
        apps: Revisions,
        key: AppKey,
        address: str,
        port: int,
        metrics: RequestMetrics | None,
        limits: FrontLimits | None = None,
        budget: BodyBudget | None = None,
        max_concurrency: int = 64,
        peers: Peers | None = None,
    ) -> None:
        self.apps, self.key, self.address, self.port = apps, key, address, port
        self.metrics = metrics
        # The app's labelled children, looked up once: `.labels()` per request costs more
        # than the observation. Request metrics are never removed while the front serves.
        self._requests: dict[int, Any] = {}  # code -> counter
        self._duration: Any = None
        self._instantiate: Any = None
        if metrics is not None:
            ns, name = key
            self._duration = metrics.request_duration.labels(namespace=ns, app=name)
            self._instantiate = metrics.cold_start.labels(
                namespace=ns, app=name, phase="instantiate"
            )
        self.limits = limits or FrontLimits()
        self.budget = budget or BodyBudget(self.limits.body_budget_bytes)
        workers = max(1, min(self.limits.workers, max_concurrency))
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=f"http-{key[1]}")
        # In a serving process: the app's counts in the node's other processes, so its
        # limits hold for the node.
        self.peers = peers
        self._inflight = 0
        self._handling = 0
        self._idle = asyncio.Event()  # set while no request is being handled
        self._idle.set()
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._shared: socket.socket | None = None  # a listening socket the agent passed down
        self._accepting: set[asyncio.Task[object]] = set()

    @property
    def inflight(self) -> int:
        """Requests read and handed to a worker whose worker has not ended."""
        return self._inflight

    @inflight.setter
    def inflight(self, value: int) -> None:
        self._inflight = value
        if self.peers is not None:
            self.peers.publish(Field.INFLIGHT, value)

    @property
    def handling(self) -> int:
        """Requests between headers read and response (uploads included)."""
        return self._handling

    @handling.setter
    def handling(self, value: int) -> None:
        self._handling = value
        if self.peers is not None:
            self.peers.publish(Field.HANDLING, value)

    def _others(self, field: Field) -> int:
        return self.peers.others(field) if self.peers is not None else 0

    def connections(self) -> int:
        """Open connections to this front (in this process)."""
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    async def start(self, sock: socket.socket | None = None) -> None:
        """Bind the port, or serve `sock` (a listening socket shared with other serving
        processes); raises OSError (e.g. the port is taken) for the caller to report."""
        app = web.Application(client_max_size=self.limits.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        # stop() waits for requests in flight itself; then the rest is cut short. aiohttp
        # closes a connection still waiting for a request's headers after keepalive_timeout
        # (counted from the connection or the last response): that is the header timeout.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1,
                               keepalive_timeout=self.limits.header_timeout)  # fmt: skip
        await runner.setup()
        server = runner.server
        assert server is not None
        cap = self.limits.max_connections

        def protocol() -> asyncio.BaseProtocol:
            own = len(server.connections)
            if self.peers is not None:
                self.peers.publish(Field.CONNECTIONS, own)
            return server() if own + self._others(Field.CONNECTIONS) < cap else _Refuse()

        loop = asyncio.get_running_loop()
        if sock is not None:
            self._runner, self._shared = runner, sock
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept_one, protocol)
            return
        try:
            self._listener = await loop.create_server(
                protocol, self.address, self.port, reuse_address=True
            )
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    def _accept_one(self, protocol: Callable[[], asyncio.BaseProtocol]) -> None:
        """One connection per wake-up (asyncio's server takes up to 100): every process
        sharing the socket is woken, so a burst spreads over them and a busy one takes less."""
        assert self._shared is not None
        try:
            conn, _ = self._shared.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another process took it
        except OSError as e:  # EMFILE and the like: the connection waits in the queue
            log.warning("%s/%s: accept failed: %s", *self.key, e)
            return
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(protocol, conn))
        self._accepting.add(task)
        task.add_done_callback(self._accepting.discard)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop listening; requests in flight (up to `grace` seconds) finish first.

        aiohttp's own graceful shutdown ignores bytes that arrive after it began, so a
        request still uploading its body would never finish: close the listener, wait for
        the requests in flight, and only then close the connections.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._shared is not None:  # this process's copy; the agent keeps its own
            asyncio.get_running_loop().remove_reader(self._shared.fileno())
            self._shared.close()
            self._shared = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await runner.cleanup()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _read_body(self, request: web.Request) -> tuple[bytes, int] | web.Response:
        """(body, bytes taken from the budget), or the answer when it cannot be had."""
        limit = self.limits.max_body_bytes
        declared = request.content_length or 0
        if declared > limit:
            return _too_large(limit)
        if declared and not self.budget.take(declared):
            return web.Response(status=503, text="too many request bodies buffered on this node\n",
                                headers={"Retry-After": "1"})  # fmt: skip
        taken, chunks, size = declared, [], 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while chunk := await request.content.read(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        self.budget.give(taken)
                        return _too_large(limit)
                    if size > taken:  # chunked: taken as it arrives
                        if not self.budget.take(size - taken):
                            self.budget.give(taken)
                            return web.Response(status=503, headers={"Retry-After": "1"},
                                text="too many request bodies buffered on this node\n")  # fmt: skip
                        taken = size
                    chunks.append(chunk)
        except TimeoutError:
            self.budget.give(taken)
            return web.Response(status=408, text="request body not received in time\n",
                                headers={"Connection": "close"})  # fmt: skip
        except BaseException:
            self.budget.give(taken)
            raise
        return b"".join(chunks), taken

    def _submit(
        self, rev: ServingRevision, module: LoadedModule, cgi: CgiRequest, spec: InstanceSpec
    ) -> asyncio.Future[CgiResponse]:
        """Run the request's instance on this app's workers; the slot is freed when the
        worker ends, whether or not the request still waits for it. The worker wakes the
        loop once, with the answer and the freed slot together."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[CgiResponse] = loop.create_future()
        self.inflight += 1

        def work() -> None:
            try:
                response = rev.invoke(module, cgi, spec)
            except BaseException as err:  # raised in the awaiting request instead
                loop.call_soon_threadsafe(self._worker_ended, answer, None, err)
            else:
                loop.call_soon_threadsafe(self._worker_ended, answer, response, None)

        self.executor.submit(work)
        return answer

    def _worker_ended(
        self,
        answer: asyncio.Future[CgiResponse],
        response: CgiResponse | None,
        error: BaseException | None,
    ) -> None:
        self.inflight -= 1
        if answer.done():  # the request timed out meanwhile
            return
        if error is not None:
            answer.set_exception(error)
        else:
            assert response is not None
            answer.set_result(response)

    def _count(self, code: int, seconds: float) -> None:
        if self.metrics is None:
            return
        counter = self._requests.get(code)
        if counter is None:
            ns, name = self.key
            counter = self.metrics.requests.labels(namespace=ns, app=name, code=str(code))
            self._requests[code] = counter
        counter.inc()
        self._duration.observe(seconds)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        ns, name = self.key
        rev = self.apps.http_revision(self.key)
        code = 503
        try:
            served = rev.serving() if rev is not None else None
            if rev is None or served is None:
                code, text = (rev.refusal() if rev is not None else None) or (
                    503, "app is not ready on this node\n")  # fmt: skip
                return web.Response(status=code, text=text, headers={"Retry-After": "1"})
            module, spec = served
            limits = rev.spec.limits
            self.handling += 1
            self._idle.clear()
            try:
                read = await self._read_body(request)
                if isinstance(read, web.Response):
                    code = read.status
                    return read
                body, taken = read
                try:
                    if self.inflight + self._others(Field.INFLIGHT) >= limits.max_concurrency:
                        return web.Response(
                            status=503,
                            text="too many requests in flight on this node\n",
                            headers={"Retry-After": "1"},
                        )
                    peer = (
                        request.transport.get_extra_info("peername") if request.transport else None
                    )
                    cgi = CgiRequest(
                        method=request.method,
                        # CGI: PATH_INFO decoded once (aiohttp's path is), QUERY_STRING raw.
                        path=request.path,
                        query=request.rel_url.raw_query_string,
                        headers=[(k, v) for k, v in request.headers.items()],
                        body=body,
                        server=ServerInfo(
                            server_name=request.host.split(":")[0],
                            server_port=self.port,
                            remote_addr=peer[0] if peer else "",
                            remote_port=peer[1] if peer else None,
                        ),
                    )
                    # A timeout leaves the worker running: its slot stays taken until it ends.
                    async with asyncio.timeout(limits.request_timeout_seconds + 5):
                        resp = await self._submit(rev, module, cgi, spec)
                finally:
                    self.budget.give(taken)
            finally:
                self.handling -= 1
                if self.handling == 0:
                    self._idle.set()
            code = resp.status
            if resp.error:
                log.warning("%s/%s: %s %s -> %d: %s", ns, name, request.method, request.path,
                            resp.status, resp.error)  # fmt: skip
            if self.metrics is not None and resp.result is not None:
                # Every request is a fresh instance: its start is a cold start.
                self._instantiate.observe(resp.result.instantiate_seconds)
            # A list keeps repeated headers (Set-Cookie) apart.
            headers = [(k, v) for k, v in resp.headers if k.lower() not in _HOP_BY_HOP]
            return web.Response(status=resp.status, body=resp.body, headers=headers)
        except TimeoutError:
            code = 504
            return web.Response(status=504, text="request timed out\n")
        except (ConnectionError, asyncio.CancelledError):
            code = 499  # the client went away (nginx's code): nothing to answer
            raise
        except web.HTTPException as e:
            code = e.status
            raise
        except Exception:
            log.exception("%s/%s: %s %s failed in the agent", ns, name, request.method,
                          request.path)  # fmt: skip
            code = 500
            return web.Response(status=500, text="internal error in the agent\n")
        finally:
            self._count(code, time.perf_counter() - started)


class HttpFronts:
    """The listeners of this node's HTTP apps, kept in line with the desired apps.

    A port that cannot be bound (taken by another process) is a PortConflict for that app,
    reported in its status and tried again every `retry_seconds`.
    """

    def __init__(
        self,
        apps: Apps,
        address: str,
        metrics: RequestMetrics | None,
        event: EventSink,
        retry_seconds: float = 5.0,
        limits: FrontLimits | None = None,
        processes: ServingProcesses | None = None,
    ) -> None:
        self.apps, self.address, self.metrics = apps, address, metrics
        self.event, self.retry_seconds = event, retry_seconds
        self.limits = limits or FrontLimits()
        self.budget = BodyBudget(self.limits.body_budget_bytes)
        self.fronts: dict[AppKey, HttpFront] = {}  # served in this process
        # With serving processes: the agent binds each app's socket (so a taken port is its
        # PortConflict) and keeps it; the processes serve copies of it.
        self.processes = processes
        self.listeners: dict[AppKey, tuple[int, socket.socket]] = {}
        self.errors: dict[AppKey, tuple[str, str]] = {}
        self._lock = asyncio.Lock()
        self._stopping = False
        self._retry: asyncio.Task[None] | None = None

    async def sync(self, desired: Iterable[DesiredApp]) -> None:
        # Starting a front awaits: without the lock two syncs could bind one app's port and
        # one would report a conflict with itself.
        async with self._lock:
            if not self._stopping:
                await self._sync_locked(list(desired))
        if self.errors and self._retry is None:
            self._retry = asyncio.create_task(self._retry_loop())

    async def _retry_loop(self) -> None:
        try:
            while self.errors and not self._stopping:
                await asyncio.sleep(self.retry_seconds)  # the port may have been freed
                await self.sync(self.apps.desired())
        finally:
            self._retry = None

    async def _sync_locked(self, desired: list[DesiredApp]) -> None:
        wanted = {
            d.key: d
            for d in desired
            if d.spec.mode is Mode.HTTP and d.spec.http is not None and d.replicas > 0
        }
        ports = {key: d.spec.http.port for key, d in wanted.items() if d.spec.http is not None}
        for key in list(self.fronts):
            if ports.get(key) != self.fronts[key].port:
                await self.fronts.pop(key).stop()
        for key in list(self.listeners):
            if ports.get(key) != self.listeners[key][0]:
                await self._unlisten(key, 30.0)
        for key in list(self.errors):
            if key not in ports:
                del self.errors[key]
        for key, port in ports.items():
            if key in self.fronts or key in self.listeners:
                continue
            try:
                if self.processes is not None:
                    sock = _listening_socket(self.address, port)
                    self.listeners[key] = (port, sock)
                    self.processes.add(key, port, sock, wanted[key].spec.limits.max_concurrency)
                    log.info("%s/%s served on http://%s:%d by %d processes", *key,
                             self.address, port, self.processes.count)  # fmt: skip
                    self.errors.pop(key, None)
                    continue
                front = HttpFront(self.apps, key, self.address, port, self.metrics, self.limits,
                                  self.budget, wanted[key].spec.limits.max_concurrency)  # fmt: skip
                await front.start()
            except OSError as e:
                msg = f"spec.http.port {port} cannot be served on {self.address}: {e}"
                if self.errors.get(key, ("", ""))[1] != msg:
                    self.event(key, "Warning", Reason.PORT_CONFLICT, msg)
                self.errors[key] = (Reason.PORT_CONFLICT, msg)
                continue
            self.errors.pop(key, None)
            self.fronts[key] = front
            log.info("%s/%s served on http://%s:%d", *key, self.address, port)

    async def stop(self, grace: float) -> None:
        """Stop every listener; requests in flight get up to `grace` seconds."""
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        async with self._lock:
            self._stopping = True
            fronts = list(self.fronts.values())
            self.fronts.clear()
            listening = list(self.listeners)
        await asyncio.gather(
            *(front.stop(grace) for front in fronts),
            *(self._unlisten(key, grace) for key in listening),
        )
        if self.processes is not None:
            await self.processes.stop()

    async def _unlisten(self, key: AppKey, grace: float) -> None:
        """The serving processes stop serving the app (in-flight requests finish), then the
        agent closes its socket."""
        _, sock = self.listeners.pop(key)
        try:
            if self.processes is not None:
                await self.processes.drop(key, grace)
        finally:
            sock.close()

    def memory_bytes(self, key: AppKey) -> int:
        """Linear memory of the app's requests in flight in the serving processes (what the
        agent's own HttpRevision counts when it serves in process)."""
        if self.processes is None or key not in self.listeners:
            return 0
        return self.processes.counts.total(self.processes.slot(key), Field.MEMORY)

    def state(self, key: AppKey) -> FrontState | None:
        """An app's counts on this node, over every process that serves it."""
        if key in self.fronts:
            front = self.fronts[key]
            return FrontState(front.inflight, front.handling, front.connections(),
                              front.budget.used)  # fmt: skip
        if self.processes is not None and key in self.listeners:
            counts, slot = self.processes.counts, self.processes.slot(key)
            return FrontState(counts.total(slot, Field.INFLIGHT),
                              counts.total(slot, Field.HANDLING),
                              counts.total(slot, Field.CONNECTIONS),
                              counts.total(NODE_SLOT, Field.BUDGET))  # fmt: skip
        return None

    def serving(self, key: AppKey) -> bool:
        """False while serving processes have not all loaded the app's revision yet."""
        return self.processes is None or key not in self.listeners or self.processes.synced(key)


@dataclass(frozen=True)
class FrontState:
    inflight: int
    handling: int
    connections: int
    budget_used: int  # the node's request-body budget in use (every app)


def _listening_socket(address: str, port: int) -> socket.socket:
    """A listening TCP socket on address:port, as asyncio's create_server would open it."""
    family, type_, proto, _, addr = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock
