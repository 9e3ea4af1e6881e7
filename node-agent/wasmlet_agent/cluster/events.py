"""Events on WasmApps (what `kubectl describe wasmapp` shows), posted in order on a thread
of their own so an instance never waits on the API server; repeats within a minute dropped."""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from kubernetes import client

from wasmlet.api.constants import GROUP, VERSION
from wasmlet.api.placements import MAX_MESSAGE
from wasmlet_agent.cluster.placement_watch import Placements
from wasmlet_agent.revision import AppKey

log = logging.getLogger("wasmlet.agent.node")
DEDUPE_SECONDS = 60.0


class EventRecorder:
    def __init__(self, node: str, api: client.ApiClient, store: Placements) -> None:
        self.node, self.store = node, store
        self.core = client.CoreV1Api(api)
        self._seen: dict[tuple[AppKey, str, str], float] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="events")

    def __call__(self, key: AppKey, type_: str, reason: str, message: str) -> None:
        """An EventSink: queue the Event and return at once."""
        self._pool.submit(self._post, key, type_, reason, message)

    def _post(self, key: AppKey, type_: str, reason: str, message: str) -> None:
        dedupe = (key, reason, message)
        now = time.monotonic()
        if now - self._seen.get(dedupe, -1e9) < DEDUPE_SECONDS:
            return
        self._seen[dedupe] = now
        stamp = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{key[1]}.{uuid.uuid4().hex[:12]}", namespace=key[0]
            ),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="WasmApp",
                name=key[1],
                namespace=key[0],
                uid=self.store.owner_uid(*key),
            ),
            reason=str(reason),
            message=f"{self.node}: {message}"[:MAX_MESSAGE],
            type=type_,
            source=client.V1EventSource(component="wasmlet-agent", host=self.node),
            first_timestamp=stamp,
            last_timestamp=stamp,
            count=1,
            reporting_component="wasmlet.dev/agent",
            reporting_instance=self.node,
        )
        try:
            self.core.create_namespaced_event(key[0], body)
        except Exception as e:  # events are best effort; the next same one is tried again
            self._seen.pop(dedupe, None)
            log.debug("event %s: %s", reason, e)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
