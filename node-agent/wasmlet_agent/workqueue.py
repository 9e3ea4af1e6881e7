"""A de-duplicating work queue with one worker thread, like client-go's workqueue.

Keys added while queued are coalesced; a key is never handled by two threads at once. The
app controllers use it so a burst of instance state changes costs one reconcile per app.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

log = logging.getLogger("wasmlet.agent")


class WorkQueue(Generic[K]):
    def __init__(self, handle: Callable[[K], None], name: str) -> None:
        self._handle = handle
        self._queue: list[K] = []
        self._queued: set[K] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def add(self, key: K) -> None:
        with self._cond:
            if self._closed or key in self._queued:
                return
            self._queued.add(key)
            self._queue.append(key)
            self._cond.notify()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or being handled (tests, shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                key = self._queue.pop(0)
                self._queued.discard(key)
                self._busy = True
            try:
                self._handle(key)
            except Exception:  # one app's failure must not stop every other app's
                log.exception("reconciling %s failed; retrying", key)
                retry = threading.Timer(1.0, self.add, (key,))
                retry.daemon = True
                retry.start()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
