"""The agent's network side: each HTTP app's port, and the agent's own API.

The agent API (health, readiness, metrics, apps, logs) listens on its own port. Each
HTTP-mode app gets a listener on spec.http.port at the node's address; every request is run
by a fresh instance on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wasmlet_agent.agent import Agent, AppReport
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.runtime.cgi import CgiRequest, ServerInfo, invoke_cgi
from wasmlet_agent.supervisor import AppKey

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
        agent: Agent,
        key: AppKey,
        address: str,
        port: int,
        executor: ThreadPoolExecutor,
        metrics: AgentMetrics | None,
    ) -> None:
        self.agent, self.key, self.address, self.port = agent, key, address, port
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
        rev = self.agent.http_revision(self.key)
        code = 503
        try:
            served = rev.http_serving() if rev is not None else None
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
                self.metrics.cold_start.labels(app=name, phase="instantiate").observe(
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


def report_json(rep: AppReport) -> dict[str, Any]:
    return {
        "namespace": rep.key[0],
        "name": rep.key[1],
        "revision": rep.revision,
        "desired": rep.desired,
        "replicas": rep.replicas,
        "ready": rep.ready,
        "updated": rep.updated,
        "digest": rep.digest,
        "problem": list(rep.problem) if rep.problem else None,
        "instances": [
            {**asdict(s), "state": s.state.value, "ready": s.ready} for s in rep.instances
        ],
    }


def api_app(
    agent: Agent, metrics: AgentMetrics | None, ready: Callable[[], bool]
) -> web.Application:
    """Health, readiness, metrics, apps and logs (what `wasmlet logs` reads)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        return (
            web.Response(text="ok\n") if ready() else web.Response(status=503, text="not ready\n")
        )

    async def metrics_(_: web.Request) -> web.Response:
        if metrics is None:
            return web.Response(status=404)
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def apps(_: web.Request) -> web.Response:
        reports = [r for k in agent.app_keys() if (r := agent.report(k)) is not None]
        return web.json_response([report_json(r) for r in reports])

    async def logs(request: web.Request) -> web.StreamResponse:
        key = (request.match_info["namespace"], request.match_info["app"])
        wanted = request.query.get("instance")
        try:
            tail = int(request.query.get("tail", "100"))
        except ValueError:
            return web.Response(status=400, text="tail must be an integer\n")
        buffers = [
            (name, buf)
            for rev in agent.revisions(key)
            for name, buf in rev.logs.items()
            if wanted in (None, name)
        ]
        if not buffers:
            return web.Response(status=404, text=f"no instances of {key[0]}/{key[1]} here\n")
        prefix = len(buffers) > 1
        lines = [
            f"[{name}] {line.text}" if prefix else line.text
            for name, buf in buffers
            for line in buf.tail(tail)
        ]
        return web.Response(text="".join(f"{x}\n" for x in lines))

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_)
    app.router.add_get("/apps", apps)
    app.router.add_get("/logs/{namespace}/{app}", logs)
    return app
