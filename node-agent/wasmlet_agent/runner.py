"""Runs an Agent inside an event loop: its HTTP fronts, its API, and the status heartbeat.

Both modes use it: standalone (desired apps from manifest files) and cluster (desired apps
from this node's placements, reports written back to their status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from wasmlet.api.constants import Mode
from wasmlet_agent.agent import Agent, AppReport, DesiredApp
from wasmlet_agent.cache import Cache
from wasmlet_agent.lifecycle import State
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.modulestore import ModuleStore
from wasmlet_agent.objects import ObjectLookup
from wasmlet_agent.runtime.engine import WasmEngine, wasmtime_version
from wasmlet_agent.server import HttpFront, api_app
from wasmlet_agent.supervisor import AppKey, EventSink, Services

log = logging.getLogger("wasmlet.agent")

# Without changes, reports (metrics, placement status) are still redone this often.
FULL_REPORT_SECONDS = 2.0

OnReports = Callable[[dict[AppKey, AppReport]], Awaitable[None]]


@dataclass
class RunnerConfig:
    node: str
    address: str = "127.0.0.1"  # where HTTP apps are served
    api_address: str = "127.0.0.1"
    api_port: int = 0  # 0: a free port
    cache_dir: Path = Path(".cache/agent")
    cache_max_bytes: int | None = 2 * 1024**3
    http_workers: int = 32
    report_interval: float = 0.1
    port_retry_seconds: float = 5.0  # how often a taken spec.http.port is tried again
    extra: dict[str, str] = field(default_factory=dict)


class NodeRunner:
    def __init__(
        self, config: RunnerConfig, lookup: ObjectLookup, event: EventSink | None = None
    ) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.metrics = AgentMetrics(self.registry, config.node)
        self.metrics.info.labels(node=config.node, wasmtime=wasmtime_version()).set(1)
        self.engine = WasmEngine()
        cache = Cache(config.cache_dir / "modules", max_bytes=config.cache_max_bytes)
        # Instances' volumes hold projected Secrets: only the agent's user may enter.
        instance_root = config.cache_dir / "instances"
        instance_root.mkdir(parents=True, exist_ok=True)
        instance_root.chmod(0o700)
        self._changed = threading.Event()
        self.services = Services(
            modules=ModuleStore(cache, self.engine, lookup, self.metrics),
            lookup=lookup,
            instance_root=instance_root,
            metrics=self.metrics,
            on_change=lambda key: self._changed.set(),
            event=event or (lambda key, t, reason, msg: None),
        )
        self.agent = Agent(self.services)
        self.executor = ThreadPoolExecutor(config.http_workers, thread_name_prefix="http")
        self.fronts: dict[AppKey, HttpFront] = {}
        self.front_errors: dict[AppKey, tuple[str, str]] = {}
        self.ready = False
        self.api_port = 0
        self._api: web.AppRunner | None = None
        self._listeners: list[OnReports] = []
        self._task: asyncio.Task[None] | None = None
        self._fronts_lock = asyncio.Lock()
        self._stopping = False

    def on_reports(self, fn: OnReports) -> None:
        self._listeners.append(fn)

    async def start(self) -> None:
        runner = web.AppRunner(api_app(self.agent, self.metrics, lambda: self.ready),
                               access_log=None, handle_signals=False)  # fmt: skip
        await runner.setup()
        site = web.TCPSite(runner, self.config.api_address, self.config.api_port)
        await site.start()
        self._api = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.api_port = sockets[0].getsockname()[1] if sockets else self.config.api_port
        self._task = asyncio.create_task(self._report_loop())
        log.info("agent %s API on http://%s:%d", self.config.node, self.config.api_address,
                 self.api_port)  # fmt: skip

    async def apply(self, desired: Iterable[DesiredApp]) -> None:
        wanted = list(desired)
        self.agent.apply(wanted)
        await self._sync_fronts(wanted)
        self._changed.set()

    async def _sync_fronts(self, desired: list[DesiredApp]) -> None:
        # apply() and the report loop both get here; starting a front awaits, so without
        # the lock both could bind the same app's port and one would report a conflict.
        async with self._fronts_lock:
            if not self._stopping:
                await self._sync_fronts_locked(desired)

    async def _sync_fronts_locked(self, desired: list[DesiredApp]) -> None:
        ports = {
            d.key: d.spec.http.port
            for d in desired
            if d.spec.mode is Mode.HTTP and d.spec.http is not None and d.replicas > 0
        }
        for key in list(self.fronts):
            if ports.get(key) != self.fronts[key].port:
                await self.fronts.pop(key).stop()
        for key in list(self.front_errors):
            if key not in ports:
                del self.front_errors[key]
        for key, port in ports.items():
            if key in self.fronts:
                continue
            front = HttpFront(self.agent, key, self.config.address, port, self.executor,
                              self.metrics)  # fmt: skip
            try:
                await front.start()
            except OSError as e:
                msg = f"spec.http.port {port} cannot be served on {self.config.address}: {e}"
                if self.front_errors.get(key, ("", ""))[1] != msg:
                    self.services.event(key, "Warning", "PortConflict", msg)
                self.front_errors[key] = ("PortConflict", msg)
                continue
            self.front_errors.pop(key, None)
            self.fronts[key] = front
            log.info("%s/%s served on http://%s:%d", *key, self.config.address, port)

    def reports(self) -> dict[AppKey, AppReport]:
        out = {}
        for key in self.agent.app_keys():
            rep = self.agent.report(key)
            if rep is None:
                continue
            if key in self.front_errors:
                rep.problem = self.front_errors[key]
                rep.ready = rep.updated = 0
            out[key] = rep
        return out

    def _update_metrics(self, reports: dict[AppKey, AppReport]) -> None:
        self.metrics.instances.clear()
        self.metrics.memory.clear()
        for (ns, app), rep in reports.items():
            counts: dict[State, int] = {}
            for s in rep.instances:
                counts[s.state] = counts.get(s.state, 0) + 1
            for state, n in counts.items():
                self.metrics.instances.labels(namespace=ns, app=app, state=state.value).set(n)
            self.metrics.memory.labels(namespace=ns, app=app).set(
                sum(s.memory_bytes for s in rep.instances if s.state is State.RUNNING)
            )

    async def _report_loop(self) -> None:
        retry_fronts = 0.0
        loop = asyncio.get_running_loop()
        last_full = 0.0
        while True:
            started = loop.time()
            if not self._changed.is_set() and started - last_full < FULL_REPORT_SECONDS:
                await asyncio.sleep(self.config.report_interval)
                continue
            last_full = started
            try:
                changed = self._changed.is_set()
                self._changed.clear()
                if changed:
                    self.agent.resync()
                    # Compiled modules no revision uses leave memory (the disk keeps them).
                    self.services.modules.forget_unused(self.agent.digests_in_use())
                if self.front_errors and loop.time() > retry_fronts:
                    retry_fronts = loop.time() + self.config.port_retry_seconds  # maybe freed
                    await self._sync_fronts(list(self.agent.desired()))
                reports = self.reports()
                self._update_metrics(reports)
            except Exception:  # the loop is the agent's heartbeat: it must go on
                log.exception("status loop failed; retrying")
                self._changed.set()
                await asyncio.sleep(max(self.config.report_interval, 1.0))
                continue
            for fn in self._listeners:
                try:
                    await fn(reports)
                except Exception:
                    log.exception("status reporting failed")
            # With hundreds of apps a report costs real CPU: never spend over a third of it.
            elapsed = loop.time() - started
            await asyncio.sleep(max(self.config.report_interval, 2 * elapsed))

    async def shutdown(self, grace: float = 10.0) -> None:
        """In-flight requests finish, instances stop, nothing is left running."""
        self.ready = False
        # Stop the report loop first: it must not re-open a front while they close.
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        async with self._fronts_lock:
            self._stopping = True
            fronts = list(self.fronts.values())
            self.fronts.clear()
            await asyncio.gather(*(front.stop(grace) for front in fronts))
        await asyncio.to_thread(self.agent.stop, grace)
        if self._api is not None:
            await self._api.cleanup()
            self._api = None
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.engine.stop()
