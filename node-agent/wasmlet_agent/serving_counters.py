"""Counts the serving processes share, so an app's limits hold for the node, not per process.

One memfd, made by the agent and mapped by every serving process: a table of int64 cells,
one row per (slot, process), one column per field. Slot 0 is the node (the request-body
budget); the agent gives each HTTP app a slot of its own. Each process writes only its own
row (single writer, no lock) and reads the others' to check a limit: the sum is exact except
while two processes admit at the same instant, when each may admit one more than the limit
allows (at most processes - 1 over). The agent zeroes a crashed process's rows, so what it
held is given back.
"""

from __future__ import annotations

import mmap
import os
from enum import IntEnum

NODE_SLOT = 0


class Field(IntEnum):
    INFLIGHT = 0  # requests handed to an instance whose worker has not ended
    HANDLING = 1  # requests between headers read and response
    CONNECTIONS = 2  # open connections
    BUDGET = 3  # request-body bytes buffered (node slot only)
    MEMORY = 4  # linear memory of the app's requests in flight (published every tick)


_FIELDS = len(Field)


class SharedCounts:
    def __init__(self, fd: int, processes: int, slots: int) -> None:
        self.fd, self.processes, self.slots = fd, processes, slots
        size = slots * processes * _FIELDS * 8
        self._map = mmap.mmap(fd, size)
        self._cells = memoryview(self._map).cast("q")

    @classmethod
    def create(cls, processes: int, slots: int) -> SharedCounts:
        fd = os.memfd_create("wasmlet-serving-counts", os.MFD_CLOEXEC)
        os.ftruncate(fd, slots * processes * _FIELDS * 8)  # zero-filled
        return cls(fd, processes, slots)

    def _at(self, slot: int, process: int, field: Field) -> int:
        return (slot * self.processes + process) * _FIELDS + field

    def set(self, slot: int, process: int, field: Field, value: int) -> None:
        self._cells[self._at(slot, process, field)] = value

    def get(self, slot: int, process: int, field: Field) -> int:
        return int(self._cells[self._at(slot, process, field)])

    def total(self, slot: int, field: Field) -> int:
        return sum(self.get(slot, p, field) for p in range(self.processes))

    def others(self, slot: int, process: int, field: Field) -> int:
        return self.total(slot, field) - self.get(slot, process, field)

    def clear(self, slot: int, process: int | None = None) -> None:
        """Zero a slot's rows (an app added or gone), or one process's row of it."""
        for p in range(self.processes) if process is None else (process,):
            for field in Field:
                self.set(slot, p, field, 0)

    def clear_process(self, process: int) -> None:
        for slot in range(self.slots):
            self.clear(slot, process)

    def close(self) -> None:
        self._cells.release()
        self._map.close()


class Peers:
    """One app's counts in the other serving processes, as one process's front sees them."""

    def __init__(self, counts: SharedCounts, slot: int, process: int) -> None:
        self.counts, self.slot, self.process = counts, slot, process

    def others(self, field: Field) -> int:
        return self.counts.others(self.slot, self.process, field)

    def publish(self, field: Field, value: int) -> None:
        self.counts.set(self.slot, self.process, field, value)
