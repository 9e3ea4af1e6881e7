"""Serving HTTP apps: a listener per app on spec.http.port, and the set of them on this node.

Every request is run by a fresh instance on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from wasmlet.api.constants import Mode
from wasmlet.api.placements import Reason
from wasmlet_agent.apps import Apps, DesiredApp
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.revision import AppKey, EventSink
from wasmlet_agent.runtime.cgi import CgiRequest, ServerInfo, invoke_cgi

log = logging.getLogger("wasmlet.agent")

# Framing is the agent's job, not the guest's: these response headers are not forwarded.
_HOP_BY_HOP = frozenset(
    {"connection", "content-length", "keep-alive", "transfer-encoding", "upgrade", "te",
     "trailer", "proxy-connection"}
)  # fmt: skip


class HttpFront:
    """One HTTP app's listener on this node."""

    def __init__(
        self,
        apps: Apps,
        key: AppKey,
        address: str,
        port: int,
        executor: ThreadPoolExecutor,
        metrics: AgentMetrics | None,
    ) -> None:
        self.apps, self.key, self.address, self.port = apps, key, address, port
        self.executor, self.metrics = executor, metrics
        self.inflight = 0
        self._idle = asyncio.Event()  # set while no request is in flight
        self._idle.set()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind the port; raises OSError (e.g. the port is taken) for the caller to report."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        # stop() waits for requests in flight itself; then the rest is cut short.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.address, self.port, reuse_address=True).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self, grace: float = 30.0) -> None:
        """Stop listening; requests in flight (up to `grace` seconds) finish first.

        aiohttp's own graceful shutdown ignores bytes that arrive after it began, so a
        request still uploading its body would never finish: close the listener, wait for
        the requests in flight, and only then close the connections.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        ns, name = self.key
        rev = self.apps.http_revision(self.key)
        code = 503
        try:
            served = rev.serving() if rev is not None else None
            if rev is None or served is None:
                return web.Response(status=503, text="app is not ready on this node\n")
            module, spec = served
            limits = rev.spec.limits
            if self.inflight >= limits.max_concurrency:
                return web.Response(
                    status=503,
                    text="too many requests in flight on this node\n",
                    headers={"Retry-After": "1"},
                )
            self.inflight += 1
            self._idle.clear()
            try:
                body = await request.read()
                peer = request.transport.get_extra_info("peername") if request.transport else None
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
                loop = asyncio.get_running_loop()
                resp = await asyncio.wait_for(
                    loop.run_in_executor(self.executor, invoke_cgi, module, cgi, spec),
                    timeout=limits.request_timeout_seconds + 5,
                )
            finally:
                self.inflight -= 1
                if self.inflight == 0:
                    self._idle.set()
            code = resp.status
            if resp.error:
                log.warning("%s/%s: %s %s -> %d: %s", ns, name, request.method, request.path,
                            resp.status, resp.error)  # fmt: skip
            if self.metrics is not None and resp.result is not None:
                # Every request is a fresh instance: its start is a cold start.
                self.metrics.cold_start.labels(namespace=ns, app=name, phase="instantiate").observe(
                    resp.result.instantiate_seconds
                )
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
            if self.metrics is not None:
                self.metrics.requests.labels(namespace=ns, app=name, code=str(code)).inc()
                self.metrics.request_duration.labels(namespace=ns, app=name).observe(
                    time.perf_counter() - started
                )


class HttpFronts:
    """The listeners of this node's HTTP apps, kept in line with the desired apps.

    A port that cannot be bound (taken by another process) is a PortConflict for that app,
    reported in its status and tried again every `retry_seconds`.
    """

    def __init__(
        self,
        apps: Apps,
        address: str,
        executor: ThreadPoolExecutor,
        metrics: AgentMetrics | None,
        event: EventSink,
        retry_seconds: float = 5.0,
    ) -> None:
        self.apps, self.address, self.executor, self.metrics = apps, address, executor, metrics
        self.event, self.retry_seconds = event, retry_seconds
        self.fronts: dict[AppKey, HttpFront] = {}
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
        ports = {
            d.key: d.spec.http.port
            for d in desired
            if d.spec.mode is Mode.HTTP and d.spec.http is not None and d.replicas > 0
        }
        for key in list(self.fronts):
            if ports.get(key) != self.fronts[key].port:
                await self.fronts.pop(key).stop()
        for key in list(self.errors):
            if key not in ports:
                del self.errors[key]
        for key, port in ports.items():
            if key in self.fronts:
                continue
            front = HttpFront(self.apps, key, self.address, port, self.executor, self.metrics)
            try:
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
        await asyncio.gather(*(front.stop(grace) for front in fronts))
