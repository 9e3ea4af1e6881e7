"""`wasmlet-agent node`: the cluster-mode parts wired together, in the order a placement
flows: watch -> desired apps -> agent -> reports -> placement status.

Those objects (its WasmNode, its Lease, its placements' status, Events) are the only ones it
writes; the API server's admission policy (deploy/30-agent-node-policy.yaml) holds it to its
own node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from kubernetes import client

from wasmlet.clients import api_client
from wasmlet_agent.agent import Agent
from wasmlet_agent.cluster.events import EventRecorder
from wasmlet_agent.cluster.heartbeat import Heartbeat
from wasmlet_agent.cluster.lookup import ApiLookup
from wasmlet_agent.cluster.placement_watch import Placements, PlacementWatch, desired_apps
from wasmlet_agent.cluster.reader import reader_client
from wasmlet_agent.cluster.status_writer import StatusWriter
from wasmlet_agent.config import AgentConfig

log = logging.getLogger("wasmlet.agent.node")
REGISTER_ATTEMPTS = 60


async def run_node(config: AgentConfig) -> int:
    api = api_client(config.cluster.kubeconfig)
    store = Placements()
    events = EventRecorder(config.node, api, store)
    # Secrets and ConfigMaps are read as this node's reader: only what its placements name.
    reader = reader_client(api, config.node)
    agent = Agent(config, ApiLookup(client.CoreV1Api(reader)), event=events)
    await agent.start()

    def mark_ready() -> None:
        agent.ready = True

    heartbeat = Heartbeat(
        config,
        api,
        api_port=lambda: agent.api_port,
        instances=lambda: sum(r.replicas for r in agent.reports().values()),
        on_beat=mark_ready,
    )
    for attempt in range(REGISTER_ATTEMPTS):
        try:
            await asyncio.to_thread(heartbeat.register)
            break
        except Exception as e:
            log.warning("registering node %s failed (attempt %d): %s", config.node, attempt + 1, e)
            await asyncio.sleep(1)
    else:
        await agent.shutdown()
        return 1
    writer = StatusWriter(api, store)
    agent.on_reports(writer.write)
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def placements_changed() -> None:  # on the watch's thread
        loop.call_soon_threadsafe(changed.set)

    watch = PlacementWatch(config.node, api, store, on_change=placements_changed)
    watch.start()
    heartbeat.start()

    async def apply_loop() -> None:
        while True:
            await changed.wait()
            changed.clear()
            await agent.apply(desired_apps(store.snapshot()))
            await asyncio.sleep(0.02)  # a burst of watch events costs one apply

    applier = asyncio.create_task(apply_loop())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("node %s joined; agent API on port %d", config.node, agent.api_port)
    await stop.wait()
    log.info("node %s stopping", config.node)
    watch.stop()
    heartbeat.stop()
    applier.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await applier
    await agent.shutdown()
    writer.close()
    events.close()
    reader.close()  # type: ignore[no-untyped-call]
    return 0
