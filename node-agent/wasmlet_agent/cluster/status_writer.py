"""Placement status from the agent's reports: computed by the pure `placement_status`,
written only when it changed, a few at a time on the agent's own writer threads."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from wasmlet.api.constants import GROUP, VERSION, WASMPLACEMENTS
from wasmlet.api.placements import placement_status, rfc3339, same_status
from wasmlet_agent.cluster.placement_watch import PlacementKey, Placements
from wasmlet_agent.reporting import Reports

log = logging.getLogger("wasmlet.agent.node")
STATUS_WRITERS = 4


class StatusWriter:
    def __init__(self, api: client.ApiClient, store: Placements) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.store = store
        self._written: dict[PlacementKey, dict[str, Any]] = {}
        self._pool = ThreadPoolExecutor(STATUS_WRITERS, thread_name_prefix="status")

    async def write(self, reports: Reports) -> None:
        now = rfc3339(datetime.now(UTC))
        placements = self.store.snapshot()
        for gone in set(self._written) - set(placements):
            del self._written[gone]
        writes = []
        for key, p in placements.items():
            status = placement_status(p, reports.get((key[0], p["spec"]["app"])), now)
            last = self._written.get(key)
            if last is None or not same_status(last, status):
                writes.append(self._write(key, status))
        for start in range(0, len(writes), STATUS_WRITERS):
            await asyncio.gather(*writes[start : start + STATUS_WRITERS])

    async def _write(self, key: PlacementKey, status: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        try:
            updated: Any = await loop.run_in_executor(
                self._pool,
                lambda: self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, key[0], WASMPLACEMENTS, key[1], {"status": status}
                ),
            )
        except ApiException as e:
            if e.status != 404:
                log.warning("status of placement %s/%s: %s %s", *key, e.status, e.reason)
            return
        except Exception as e:  # connection errors: the next report retries
            log.warning("status of placement %s/%s: %s", *key, e)
            return
        self._written[key] = status
        self.store.set_status(key, updated.get("status", status))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
