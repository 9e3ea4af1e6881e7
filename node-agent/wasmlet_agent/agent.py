"""The node agent, wired once: engine, module store, apps, HTTP fronts, its API, reporting.

Both modes use it: standalone (desired apps from manifest files) and cluster (desired apps
from this node's placements, reports written back to their status). The path of one app:
`apply()` -> `Apps` (a controller per app) -> command instances or an HTTP revision; the
report loop reads what runs and tells the metrics and its listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from wasmlet.api.footprint import footprint_of
from wasmlet.api.placements import Reason
from wasmlet_agent.admission import refuse_over_memory
from wasmlet_agent.agent_api import api_app
from wasmlet_agent.apps import Apps, DesiredApp
from wasmlet_agent.cache import Cache
from wasmlet_agent.config import AgentConfig
from wasmlet_agent.host_paths import HostPathPolicy
from wasmlet_agent.http_front import HttpFronts
from wasmlet_agent.metrics import AgentMetrics, MergingRegistry
from wasmlet_agent.modulestore import ModuleStore
from wasmlet_agent.objects import ObjectLookup
from wasmlet_agent.reporting import OnReports, ReportLoop, Reports
from wasmlet_agent.revision import AppKey, EventSink, Services
from wasmlet_agent.runtime.engine import WasmEngine, wasmtime_version
from wasmlet_agent.runtime.logfiles import LogDirs, Rotation
from wasmlet_agent.runtime.modules import compile_artifact
from wasmlet_agent.serving_processes import ServingProcesses

log = logging.getLogger("wasmlet.agent")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Agent:
    def __init__(
        self, config: AgentConfig, lookup: ObjectLookup, event: EventSink | None = None
    ) -> None:
        self.config = config
        self.registry = MergingRegistry()
        self.metrics = AgentMetrics(self.registry)
        self.metrics.info.labels(node=config.node, wasmtime=wasmtime_version()).set(1)
        self.engine = WasmEngine()
        cache = Cache(config.cache_dir / "modules", max_bytes=config.cache_max_bytes)
        # Instances' volumes hold projected Secrets: only the agent's user may enter.
        instance_root = config.cache_dir / "instances"
        instance_root.mkdir(parents=True, exist_ok=True)
        instance_root.chmod(0o700)
        log_dirs = LogDirs(config.log_dir, Rotation(config.log_max_bytes, config.log_max_files),
                           config.log_gc_grace_seconds)  # fmt: skip
        log_dirs.prepare()
        agent_dirs: tuple[str, ...] = (str(config.cache_dir), str(instance_root))
        if config.log_dir is not None:  # other tenants' output: never a guest's hostPath
            agent_dirs += (str(config.log_dir),)
        self.event: EventSink = event or (lambda key, t, reason, msg: None)
        self.reporter = ReportLoop(self.reports, self.metrics, config.report_interval)
        self.apps = Apps(
            Services(
                modules=ModuleStore(cache, self.engine, lookup, self.metrics),
                lookup=lookup,
                instance_root=instance_root,
                metrics=self.metrics,
                host_paths=HostPathPolicy(
                    config.allowed_host_path_prefixes,
                    agent_dirs=agent_dirs,
                    prefixes_file=config.host_path_prefixes_file,
                ),
                event=self.event,
                log_dirs=log_dirs,
                log_buffer_bytes=config.log_buffer_bytes,
            ),
            on_report=self.reporter.changed.set,
        )
        processes = None
        if config.http_processes > 1:
            engine = self.engine

            def artifact(digest: str) -> bytes:  # MAC-checked; recompiled if it fails
                return cache.get_or_compile(
                    digest, engine.fingerprint, lambda wasm: compile_artifact(engine, wasm)
                )

            processes = ServingProcesses(
                config.http_processes, self.apps, artifact, engine.fingerprint, config.http,
                self.metrics, self.registry, self.event, self.reporter.changed.set,
                config.cache_dir / "serving-metrics",
            )  # fmt: skip
        self.fronts = HttpFronts(self.apps, config.address, self.metrics, self.event,
                                 config.port_retry_seconds, config.http, processes)  # fmt: skip
        # Cluster mode sets it to the memory the node advertises: desired apps beyond it are
        # refused here (admission.py); standalone runs what its files say.
        self.memory_capacity: int | None = None
        self.refused: dict[AppKey, tuple[str, str]] = {}
        self.ready = False
        # Cluster mode sets it: while true /readyz answers 200 "autonomous" (edge autonomy).
        self.autonomous: Callable[[], bool] = lambda: False
        self.api_port = 0
        self._api: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None

    def on_reports(self, fn: OnReports) -> None:
        self.reporter.add_listener(fn)

    async def start(
        self, ssl_context: ssl.SSLContext | None = None, guard: Middleware | None = None
    ) -> None:
        """Serve the agent API (raises OSError if its port is taken) and start reporting.

        Cluster mode passes TLS and a `guard` middleware (authorization); standalone neither."""
        app = api_app(self.apps, self.reports, self.metrics, lambda: self.ready)
        if guard is not None:
            app.middlewares.append(guard)
        app.middlewares.append(self._readiness_autonomous)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(
            runner, self.config.api_address, self.config.api_port, ssl_context=ssl_context
        )
        await site.start()
        self._api = runner
        sockets = getattr(site._server, "sockets", None) or []
        self.api_port = sockets[0].getsockname()[1] if sockets else self.config.api_port
        self._task = asyncio.create_task(self.reporter.run())
        log.info("agent %s API on %s://%s:%d", self.config.node,
                 "https" if ssl_context else "http", self.config.api_address,
                 self.api_port)  # fmt: skip

    @web.middleware
    async def _readiness_autonomous(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """`/readyz` says "autonomous" (200) while the node runs without the API server: it
        serves its apps, and a load balancer should keep sending it traffic."""
        if request.path == "/readyz" and self.autonomous():
            return web.Response(text="autonomous\n")
        return await handler(request)

    async def apply(self, desired: Iterable[DesiredApp]) -> None:
        """Make this node run exactly `desired` (the whole set; only the difference changes)."""
        wanted = self._within_memory(list(desired))
        self.apps.apply(wanted)
        await self.fronts.sync(wanted)

    def _within_memory(self, wanted: list[DesiredApp]) -> list[DesiredApp]:
        """`wanted` with the apps that would overfill this node's memory scaled to 0."""
        if self.memory_capacity is None:
            return wanted
        need = {d.key: footprint_of(d.spec).on_node(d.replicas) for d in wanted}
        # Running: what this node runs now (a refused app is held at 0 replicas, so not it).
        running = {d.key for d in self.apps.desired() if d.replicas > 0}
        refused = refuse_over_memory(need, running, self.memory_capacity)
        for key, message in refused.items():
            if key not in self.refused:
                log.warning("%s/%s refused: %s", *key, message)
                self.event(key, "Warning", Reason.INSUFFICIENT_MEMORY, message)
        self.refused = {k: (Reason.INSUFFICIENT_MEMORY, m) for k, m in refused.items()}
        return [dataclasses.replace(d, replicas=0) if d.key in refused else d for d in wanted]

    def reports(self) -> Reports:
        out = {}
        for key in self.apps.app_keys():
            rep = self.apps.report(key)
            if rep is None:
                continue
            if key in self.fronts.errors:
                rep.problem = self.fronts.errors[key]
                rep.ready = rep.updated = 0
            elif key in self.refused:
                rep.problem = self.refused[key]
                rep.ready = rep.updated = 0
            elif not self.fronts.serving(key):  # serving processes still loading it
                rep.ready = 0
            rep.memory_bytes += self.fronts.memory_bytes(key)
            out[key] = rep
        return out

    async def shutdown(self, grace: float = 10.0) -> None:
        """In-flight requests finish, instances stop, nothing is left running."""
        self.ready = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.fronts.stop(grace)
        await asyncio.to_thread(self.apps.stop, grace)
        if self._api is not None:
            await self._api.cleanup()
            self._api = None
        self.engine.stop()
