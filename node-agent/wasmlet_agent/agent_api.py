"""The agent's own API: health, readiness, metrics, the apps it runs, and their logs.

It listens on its own port (not an app's); `wasmlet logs` and Prometheus read it. Every
response is bounded (see `api_auth`); in cluster mode it is served over TLS behind the
`cluster.api_guard` middleware, standalone on localhost without either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wasmlet.api.placements import AppReport
from wasmlet_agent.api_auth import MAX_APPS, cap_bytes, tail_lines
from wasmlet_agent.apps import Apps
from wasmlet_agent.metrics import AgentMetrics


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

    async def logs(request: web.Request) -> web.StreamResponse:
        key = (request.match_info["namespace"], request.match_info["app"])
        wanted = request.query.get("instance")
        try:
            tail = tail_lines(request.query.get("tail"))
        except ValueError:
            return web.Response(status=400, text="tail must be an integer\n")
        buffers = [
            (name, buf)
            for rev in apps.revisions(key)
            for name, buf in list(rev.logs.items())
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
        lines = lines[len(lines) - tail :]  # the cap holds across instances too
        return web.Response(text=cap_bytes("".join(f"{x}\n" for x in lines)))

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_)
    app.router.add_get("/apps", apps_)
    app.router.add_get("/logs/{namespace}/{app}", logs)
    return app
