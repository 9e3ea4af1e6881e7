"""`wasmlet-agent node`: the cluster-mode parts wired together, in the order a placement
flows: watch -> desired apps -> agent -> reports -> placement status; and beside them the
node's journal, so an agent that starts with no API server in reach runs what it last had.

Those objects (its WasmNode, its Lease, its placements' status, Events) are the only ones it
writes; the API server's admission policy (deploy/30-agent-node-policy.yaml) holds it to its
own node. It never writes a spec: what it did offline cannot overwrite the API's desired state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from wasmlet.api.spec import parse_quantity
from wasmlet.clients import api_client
from wasmlet_agent.agent import Agent
from wasmlet_agent.cluster.api_guard import Guard, Reviewer
from wasmlet_agent.cluster.autonomy import Autonomy, all_ready, process_age
from wasmlet_agent.cluster.events import EventRecorder
from wasmlet_agent.cluster.heartbeat import AGENT_VERSION, Heartbeat
from wasmlet_agent.cluster.journal import JournalError, JournalState, kept_placement, pinned
from wasmlet_agent.cluster.journal_store import JournalStore
from wasmlet_agent.cluster.lookup import JournalLookup
from wasmlet_agent.cluster.object_cache import ObjectCache, referenced
from wasmlet_agent.cluster.placement_watch import (
    ParsedTemplates,
    Placements,
    PlacementWatch,
    desired_apps,
    desired_signature,
)
from wasmlet_agent.cluster.preflight import preflight
from wasmlet_agent.cluster.reader import reader_client
from wasmlet_agent.cluster.status_writer import StatusWriter
from wasmlet_agent.config import AgentConfig
from wasmlet_agent.reporting import Reports
from wasmlet_agent.serving_cert import ServingCert, self_signed

log = logging.getLogger("wasmlet.agent.node")


async def api_reachable(api: client.ApiClient, timeout: float) -> bool:
    """Whether the API server answers (GET /version) within `timeout` seconds."""
    version = client.VersionApi(api)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            await asyncio.to_thread(version.get_code, _request_timeout=max(min(left, 2.0), 0.1))
            return True
        except Exception as e:
            log.debug("API server not reachable yet: %s", e)
            await asyncio.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
    return False


JOURNAL_MIN_INTERVAL = 1.0  # seconds between two journal writes


class Journaling:
    """Rewrites the journal whenever what the node runs, or what its apps read, changes."""

    def __init__(
        self, store: JournalStore, placements: Placements, lookup: JournalLookup, agent: Agent
    ) -> None:
        self.store, self.placements, self.lookup, self.agent = store, placements, lookup, agent
        self.dirty = asyncio.Event()
        self.paused = False  # while the desired set is the journal's own, there is nothing new
        self._digests: dict[tuple[str, str, str], str] = {}

    async def on_reports(self, reports: Reports) -> None:
        digests = {(k[0], k[1], r.revision): r.digest for k, r in reports.items() if r.digest}
        if digests != self._digests:
            self._digests = digests
            self.dirty.set()

    def state(self) -> JournalState:
        config_maps, secrets = self.lookup.snapshot()
        return JournalState(
            node=self.store.node,
            placements={k: kept_placement(p) for k, p in self.placements.snapshot().items()},
            config_maps=config_maps,
            secrets=secrets,
            digests=dict(self._digests),
            agent_version=AGENT_VERSION,
        )

    async def run(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            if self.paused:
                continue
            try:
                if await asyncio.to_thread(self.store.save, self.state()):
                    self.agent.metrics.journal_writes.inc()
            except OSError as e:
                log.error("writing the journal %s failed: %s", self.store.path, e)
            # At most one write a second: each rewrites every placement (1000 apps arriving
            # one by one made it quadratic). A crash loses at most the last second's
            # changes, and only matters if the API server is also out of reach at restart.
            await asyncio.sleep(JOURNAL_MIN_INTERVAL)


def load_journal(store: JournalStore, agent: Agent) -> JournalState | None:
    """The journal, or None (absent, or refused: logged and counted, never raised)."""
    try:
        return store.load()
    except JournalError as e:
        agent.metrics.journal_rejected.labels(problem=e.problem.value).inc()
        log.error("journal refused (%s): %s; the agent waits for the API server instead",
                  e.problem.value, e)  # fmt: skip
        return None
    except OSError as e:
        agent.metrics.journal_rejected.labels(problem="Unreadable").inc()
        log.error("journal %s cannot be read: %s; the agent waits for the API server instead",
                  store.path, e)  # fmt: skip
        return None


async def measure_restore(agent: Agent, apps: int, read_at: float) -> None:
    """Log and export how long the journal's apps took to be ready again."""
    while not all_ready(agent.reports(), apps):
        await asyncio.sleep(0.002)
    since_journal = time.monotonic() - read_at
    age = process_age()
    agent.metrics.journal_restore.labels(since="journal").set(since_journal)
    if age is not None:
        agent.metrics.journal_restore.labels(since="process").set(age)
    log.info("every app from the journal is ready: %.1f ms after reading it, %s after "
             "process start", since_journal * 1000,
             f"{age * 1000:.0f} ms" if age is not None else "unknown")  # fmt: skip


def serving_cert(config: AgentConfig) -> ServingCert:
    """--tls-cert-file/--tls-private-key-file, or this node's self-signed certificate."""
    c = config.cluster
    if c.tls_cert_file is not None and c.tls_private_key_file is not None:
        return ServingCert(c.tls_cert_file, c.tls_private_key_file)
    return self_signed(config.cache_dir / "tls", config.node,
                       [config.address, config.api_address])  # fmt: skip


async def run_node(config: AgentConfig) -> int:
    api = api_client(config.cluster.kubeconfig)
    store = Placements()
    autonomy = Autonomy(timeout=max(config.cluster.api_timeout_seconds,
                                    2 * config.cluster.heartbeat_seconds))  # fmt: skip
    # Secrets and ConfigMaps are read, and Events posted, as this node's reader: only what
    # its placements name, only in the namespaces where it runs apps.
    reader = reader_client(api, config.node)
    events = EventRecorder(config.node, reader, store)
    # Each object is read once and then watched: restarts are answered from memory.
    objects = ObjectCache(client.CoreV1Api(reader))
    lookup = JournalLookup(objects, lambda: autonomy.from_journal)
    agent = Agent(config, lookup, event=events)
    agent.memory_capacity = parse_quantity(config.cluster.capacity_memory, "--capacity-memory")
    agent.autonomous = autonomy.active
    # The agent API answers only to whom the API server says may ask (the kubelet's model).
    cert = serving_cert(config)
    guard = Guard(config.node, Reviewer(api).review, offline=autonomy.active,
                  state_file=config.cache_dir / "node-api-decisions.json")  # fmt: skip
    await agent.start(ssl_context=cert.context(), guard=guard.middleware)
    loop = asyncio.get_running_loop()
    journal = JournalStore(config.cache_dir / "journal", config.node)
    journaling = Journaling(journal, store, lookup, agent)

    reachable = await api_reachable(api, config.cluster.api_timeout_seconds)
    if reachable:
        autonomy.contact()
        # Checked only in reach of the API server: offline, the journal is what counts.
        problem = await preflight(api)
        if problem is not None:
            log.error("cannot start: %s", problem)
            await agent.shutdown()
            events.close()
            objects.close()
            reader.close()  # type: ignore[no-untyped-call]
            return 3
    read_at = time.monotonic()
    saved = load_journal(journal, agent)
    if saved is not None:
        lookup.restore(saved.config_maps, saved.secrets)  # stand-ins should the API go away
    restoring: asyncio.Task[None] | None = None
    if not reachable:
        if saved is None:
            log.warning("API server not reachable within %.1fs and no journal to run from; "
                        "waiting for it", config.cluster.api_timeout_seconds)  # fmt: skip
        else:
            autonomy.from_journal = journaling.paused = True
            store.replace_all(pinned(saved))
            wanted = desired_apps(store.snapshot())
            await agent.apply(wanted)
            restoring = asyncio.create_task(measure_restore(agent, len(wanted), read_at))
            log.warning("API server not reachable within %.1fs: node %s is autonomous, running "
                        "%d app(s) from its journal %s until the API server answers",
                        config.cluster.api_timeout_seconds, config.node, len(wanted),
                        journal.path)  # fmt: skip
    agent.metrics.autonomous.set(1 if autonomy.active() else 0)

    def mark_ready() -> None:  # on the heartbeat's thread
        agent.ready = True
        autonomy.contact()

    heartbeat = Heartbeat(
        config,
        api,
        api_port=lambda: agent.api_port,
        instances=lambda: sum(r.replicas for r in agent.reports().values()),
        on_beat=mark_ready,
        serving_certificate=cert.pem(),
    )
    writer = StatusWriter(api, store)
    agent.on_reports(writer.write)
    agent.on_reports(journaling.on_reports)
    changed = asyncio.Event()

    def placements_changed() -> None:  # on the watch's thread
        loop.call_soon_threadsafe(changed.set)

    def confirmed() -> None:  # on the event loop, after a list: the API's set is the one
        autonomy.contact()
        if autonomy.from_journal:
            autonomy.from_journal = journaling.paused = False
            log.info("API server reachable: its placements replace the journal's")
        journaling.dirty.set()

    def soon(fn: Callable[[], None]) -> Callable[[], None]:
        """`fn` on the event loop, called from another thread."""

        def call() -> None:
            loop.call_soon_threadsafe(fn)

        return call

    lookup.on_change = soon(journaling.dirty.set)
    watch = PlacementWatch(config.node, api, store, on_change=placements_changed,
                           on_listed=soon(confirmed))  # fmt: skip
    watch.start()
    heartbeat.start()

    parsed = ParsedTemplates()
    applied: frozenset[Any] | None = None

    async def apply_loop() -> None:
        nonlocal applied
        while True:
            await changed.wait()
            changed.clear()
            placed = store.snapshot()
            signature = desired_signature(placed)
            if signature != applied:  # not only statuses changed (most events, at scale)
                await agent.apply(desired_apps(placed, parsed))
                objects.retain(referenced((k[0], p) for k, p in placed.items()))
                applied = signature
            journaling.dirty.set()
            await asyncio.sleep(0.02)  # a burst of watch events costs one apply

    async def autonomy_gauge() -> None:
        was = autonomy.active()
        while True:
            now = autonomy.active()
            agent.metrics.autonomous.set(1 if now else 0)
            if now != was:
                state = "autonomous (no answer from the API server)" if now else "connected"
                log.warning("node %s is %s", config.node, state)
                was = now
            await asyncio.sleep(0.5)

    tasks = [asyncio.create_task(c) for c in (apply_loop(), journaling.run(), autonomy_gauge())]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("node %s started; agent API on port %d", config.node, agent.api_port)
    await stop.wait()
    log.info("node %s stopping", config.node)
    watch.stop()
    heartbeat.stop()
    for task in [*tasks, *([restoring] if restoring else [])]:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await agent.shutdown()
    writer.close()
    events.close()
    objects.close()
    reader.close()  # type: ignore[no-untyped-call]
    return 0
