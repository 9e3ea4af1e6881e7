"""What running instances use (linear memory, CPU time), as numbers other threads can read.

A `Usage` belongs to one run and is written only on that guest's own thread: once after
instantiation, from the epoch-deadline callback while the guest executes, and at the end
(see instances.py). That is the one place wasmtime lets the store's memories be read while
the guest runs. Other threads (the report loop) only read its plain attributes. Pure: the
caller passes the clock readings in, so the accounting is tested without a guest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Given each increase of a run's CPU time, in seconds (e.g. a Prometheus counter's `inc`).
OnCpu = Callable[[float], None]


class Usage:
    """The live linear memory and CPU time of one run."""

    __slots__ = ("_cpu_start", "_on_cpu", "cpu_seconds", "memory_bytes")

    def __init__(self, on_cpu: OnCpu | None = None) -> None:
        self.memory_bytes = 0  # the run's linear memories now (0 until known)
        self.cpu_seconds = 0.0  # CPU time of the guest's thread since `begin`
        self._on_cpu = on_cpu
        self._cpu_start: float | None = None

    def begin(self, thread_cpu: float) -> None:
        """The run starts on this thread, whose CPU clock (time.thread_time) reads `thread_cpu`."""
        self._cpu_start = thread_cpu
        self.cpu_seconds = 0.0

    def sample(self, memory_bytes: int | None, thread_cpu: float | None) -> None:
        """Record a reading taken on the run's thread; None leaves that value as it was.

        Only increases of CPU time are passed on, so a counter fed by `on_cpu` stays monotonic
        and adds up to exactly `cpu_seconds`, however often it is sampled.
        """
        if memory_bytes is not None:
            self.memory_bytes = memory_bytes
        if self._cpu_start is None or thread_cpu is None:
            return
        used = thread_cpu - self._cpu_start
        delta = used - self.cpu_seconds
        if delta > 0:
            self.cpu_seconds = used
            if self._on_cpu is not None:
                self._on_cpu(delta)


class InFlight:
    """The runs in progress of one HTTP revision (an instance per request), for their memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: set[Usage] = set()

    @contextmanager
    def track(self, usage: Usage) -> Iterator[Usage]:
        with self._lock:
            self._runs.add(usage)
        try:
            yield usage
        finally:
            with self._lock:
                self._runs.discard(usage)

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)

    def memory_bytes(self) -> int:
        with self._lock:
            runs = list(self._runs)
        return sum(u.memory_bytes for u in runs)
