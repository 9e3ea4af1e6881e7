"""The report loop: what the agent runs, as metrics and for its listeners (placement status).

It only reads. Woken when anything changes, it still reports every FULL_REPORT_SECONDS, and
never spends more than a third of its time reporting (hundreds of apps cost real CPU).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

from wasmlet.api.placements import AppReport, InstanceState
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.revision import AppKey

log = logging.getLogger("wasmlet.agent")

FULL_REPORT_SECONDS = 2.0

Reports = dict[AppKey, AppReport]
OnReports = Callable[[Reports], Awaitable[None]]


def update_metrics(metrics: AgentMetrics, reports: Reports) -> None:
    metrics.instances.clear()
    metrics.memory.clear()
    for (ns, app), rep in reports.items():
        counts: dict[InstanceState, int] = {}
        for s in rep.instances:
            counts[s.state] = counts.get(s.state, 0) + 1
        for state, n in counts.items():
            metrics.instances.labels(namespace=ns, app=app, state=state.value).set(n)
        metrics.memory.labels(namespace=ns, app=app).set(rep.memory_bytes)


class ReportLoop:
    def __init__(
        self, reports: Callable[[], Reports], metrics: AgentMetrics, interval: float
    ) -> None:
        self.reports, self.metrics, self.interval = reports, metrics, interval
        self.changed = threading.Event()  # set from any thread when something changed
        self._listeners: list[OnReports] = []

    def add_listener(self, fn: OnReports) -> None:
        self._listeners.append(fn)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_full = 0.0
        while True:
            started = loop.time()
            if not self.changed.is_set() and started - last_full < FULL_REPORT_SECONDS:
                await asyncio.sleep(self.interval)
                continue
            last_full = started
            self.changed.clear()
            try:
                reports = self.reports()
                update_metrics(self.metrics, reports)
            except Exception:  # the loop must go on
                log.exception("reporting failed; retrying")
                self.changed.set()
                await asyncio.sleep(max(self.interval, 1.0))
                continue
            for fn in self._listeners:
                try:
                    await fn(reports)
                except Exception:
                    log.exception("status reporting failed")
            elapsed = loop.time() - started
            await asyncio.sleep(max(self.interval, 2 * elapsed))
