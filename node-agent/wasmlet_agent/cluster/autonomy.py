"""Whether this node runs on its own (edge autonomy): a pure decision from when it last heard
the API server and where its desired set came from, kept apart from the clocks that feed it."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

from wasmlet.api.placements import AppReport


def is_autonomous(from_journal: bool, since_contact: float | None, timeout: float) -> bool:
    """Autonomous while the desired set is the journal's (not yet confirmed by a list), or
    while the API server, once reached, has not answered for longer than `timeout` seconds.
    An agent that never reached it and has no journal runs nothing: it is not ready, not
    autonomous."""
    return from_journal or (since_contact is not None and since_contact > timeout)


def all_ready(reports: Mapping[tuple[str, str], AppReport], apps: int) -> bool:
    """Every one of `apps` desired apps reports as many ready instances as it wants."""
    return len(reports) >= apps and all(r.ready >= r.desired for r in reports.values())


@dataclass
class Autonomy:
    """The inputs of `is_autonomous`, updated by the heartbeat and the placement watch."""

    timeout: float
    from_journal: bool = False
    last_contact: float | None = None  # time.monotonic() of the last answer, None: never

    def contact(self) -> None:
        self.last_contact = time.monotonic()

    def active(self) -> bool:
        since = None if self.last_contact is None else time.monotonic() - self.last_contact
        return is_autonomous(self.from_journal, since, self.timeout)


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), None where unknown."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
