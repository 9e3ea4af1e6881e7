"""The app controllers' work queue: coalesces repeats, survives a failing handler."""

from __future__ import annotations

import threading

from wasmlet_agent.workqueue import WorkQueue


def test_keys_queued_while_busy_are_coalesced() -> None:
    release = threading.Event()
    handled: list[str] = []

    def handle(key: str) -> None:
        if key == "block":
            release.wait(5)
        handled.append(key)

    q: WorkQueue[str] = WorkQueue(handle, "test-queue")
    try:
        q.add("block")
        for _ in range(5):
            q.add("a")
        q.add("b")
        release.set()
        assert q.drain(5)
        assert handled == ["block", "a", "b"]
    finally:
        q.close()


def test_a_failing_handler_is_retried_and_the_queue_goes_on() -> None:
    calls: list[str] = []
    done = threading.Event()

    def handle(key: str) -> None:
        calls.append(key)
        if key == "flaky" and calls.count("flaky") == 1:
            raise RuntimeError("first time fails")
        if calls.count("flaky") == 2:
            done.set()

    q: WorkQueue[str] = WorkQueue(handle, "test-queue")
    try:
        q.add("flaky")
        q.add("other")
        assert done.wait(5), calls
        assert "other" in calls
    finally:
        q.close()
