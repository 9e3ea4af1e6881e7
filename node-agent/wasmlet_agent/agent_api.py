"""The agent's own API: health, readiness, metrics, the apps it runs, and their logs.

It listens on its own port (not an app's); `wasmlet logs` and Prometheus read it. Every
response is bounded (see `api_auth`); in cluster mode it is served over TLS behind the
`cluster.api_guard` middleware, standalone on localhost without either.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wasmlet.api.logs import LogQuery, LogQueryError, parse_query, render_line
from wasmlet.api.placements import AppReport
from wasmlet_agent.api_auth import (
    MAX_APPS,
    MAX_FOLLOW_BYTES,
    MAX_FOLLOW_SECONDS,
    MAX_TAIL_LINES,
    cap_bytes,
)
from wasmlet_agent.apps import Apps
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.revision import AppKey
from wasmlet_agent.runtime.logs import LogBuffer, LogLine

DEFAULT_TAIL = 100  # lines per instance when the query says nothing (kubectl: all)
FOLLOW_POLL_SECONDS = 0.1  # how often a follower looks for new lines


def select_lines(
    buffers: Sequence[tuple[str, LogBuffer]], since_ns: int | None, tail: int
) -> list[tuple[str, LogLine]]:
    """The last `tail` lines per instance not older than `since_ns`, merged by time."""
    out: list[tuple[str, LogLine]] = []
    for name, buf in buffers:
        lines = [x for x in buf.tail() if since_ns is None or x.time_ns >= since_ns]
        out.extend((name, line) for line in (lines[-tail:] if tail > 0 else []))
    out.sort(key=lambda item: (item[1].time_ns, item[0], item[1].seq))
    return out


def _render(q: LogQuery, prefix: bool, name: str, line: LogLine) -> str:
    shown = name if prefix else None
    return render_line(line.text, line.time_ns, timestamps=q.timestamps, prefix=shown) + "\n"


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
    apps: Apps,
    reports: Callable[[], dict[tuple[str, str], AppReport]],
    metrics: AgentMetrics | None,
    ready: Callable[[], bool],
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

    async def apps_(_: web.Request) -> web.Response:
        items = sorted(reports().items())
        headers = {"X-Wasmlet-Truncated": f"{len(items)}"} if len(items) > MAX_APPS else None
        return web.json_response([report_json(r) for _, r in items[:MAX_APPS]], headers=headers)

    def buffers(key: AppKey, wanted: str | None) -> list[tuple[str, LogBuffer]]:
        return [
            (name, buf)
            for rev in apps.revisions(key)
            for name, buf in list(rev.logs.items())
            if wanted in (None, name)
        ]

    async def logs(request: web.Request) -> web.StreamResponse:
        key = (request.match_info["namespace"], request.match_info["app"])
        try:
            q = parse_query(request.query, time.time_ns(), DEFAULT_TAIL, MAX_TAIL_LINES)
        except LogQueryError as e:
            return web.Response(status=400, text=f"{e}\n")
        found = buffers(key, q.instance)
        if not found and not (q.follow and q.instance is None and apps.revisions(key)):
            return web.Response(status=404, text=f"no instances of {key[0]}/{key[1]} here\n")
        prefix = q.prefix or (q.instance is None and len(found) > 1)
        first = select_lines(found, q.since_ns, q.tail)[-MAX_TAIL_LINES:]
        body = cap_bytes("".join(_render(q, prefix, name, line) for name, line in first))
        if not q.follow:
            return web.Response(text=body)
        resp = web.StreamResponse(headers={
            "Content-Type": "text/plain; charset=utf-8",
            "X-Wasmlet-Follow-Limit": f"seconds={MAX_FOLLOW_SECONDS:g}, bytes={MAX_FOLLOW_BYTES}",
        })  # fmt: skip
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        positions = {name: buf.last_seq for name, buf in found}
        sent = len(body.encode())
        deadline = time.monotonic() + MAX_FOLLOW_SECONDS
        try:
            if body:
                await resp.write(body.encode())
            while sent < MAX_FOLLOW_BYTES and time.monotonic() < deadline:
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
                gone = request.transport is None or request.transport.is_closing()
                if gone or stopping.is_set():
                    break
                current = buffers(key, q.instance)
                if not current and not apps.revisions(key):
                    break  # the app left this node: nothing more will come
                batch: list[tuple[str, LogLine]] = []
                for name, buf in current:
                    new = buf.after(positions.get(name, 0))  # a new instance: from its start
                    if new:
                        positions[name] = new[-1].seq
                        batch.extend((name, line) for line in new)
                if batch:
                    batch.sort(key=lambda item: (item[1].time_ns, item[0], item[1].seq))
                    data = "".join(_render(q, prefix, n, line) for n, line in batch).encode()
                    await resp.write(data)
                    sent += len(data)
        except (ConnectionResetError, ClientConnectionResetError):
            return resp  # the client went away
        with contextlib.suppress(ConnectionResetError, ClientConnectionResetError):
            await resp.write_eof()
        return resp

    async def on_shutdown(_: web.Application) -> None:
        stopping.set()  # followers end now instead of holding the shutdown

    stopping = asyncio.Event()
    app = web.Application()
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_)
    app.router.add_get("/apps", apps_)
    app.router.add_get("/logs/{namespace}/{app}", logs)
    return app
