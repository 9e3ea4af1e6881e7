"""Live usage of a run: the pure accounting, and a real guest sampled while it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from wasmlet_agent.runtime import Cancel, InstanceSpec, LoadedModule, Outcome, run_instance
from wasmlet_agent.runtime.usage import InFlight, Usage
from wasmlet_dev.waits import wait_until

Load = Callable[[str], LoadedModule]
MiB = 1024 * 1024


def test_cpu_is_passed_on_as_increases_that_add_up() -> None:
    got: list[float] = []
    usage = Usage(got.append)
    usage.sample(4096, 5.0)  # before begin: memory only, no CPU baseline yet
    assert (usage.memory_bytes, usage.cpu_seconds, got) == (4096, 0.0, [])
    usage.begin(10.0)
    usage.sample(None, 10.5)
    usage.sample(None, 10.5)  # no increase: nothing passed on
    usage.sample(8192, 10.25)  # a reading out of order never counts backwards
    usage.sample(None, 12.0)
    assert got == [0.5, 1.5]
    assert usage.cpu_seconds == sum(got) == 2.0
    assert usage.memory_bytes == 8192  # None kept the earlier size


def test_in_flight_counts_runs_only_while_tracked() -> None:
    inflight = InFlight()
    a, b = Usage(), Usage()
    a.memory_bytes, b.memory_bytes = 3 * MiB, 2 * MiB
    with inflight.track(a):
        with inflight.track(b):
            assert (len(inflight), inflight.memory_bytes()) == (2, 5 * MiB)
        assert (len(inflight), inflight.memory_bytes()) == (1, 3 * MiB)
    assert (len(inflight), inflight.memory_bytes()) == (0, 0)


def test_memory_and_cpu_are_live_while_the_guest_runs(load: Load) -> None:
    usage, cancel = Usage(), Cancel()
    results = []
    thread = threading.Thread(
        target=lambda: results.append(
            run_instance(load("grower"), InstanceSpec(args=["6"]), cancel, usage)
        )
    )
    thread.start()
    try:
        # 6 MiB of heap on top of the initial memory, seen before the guest ends.
        wait_until(lambda: usage.memory_bytes >= 6 * MiB, "the grown memory, live", timeout=10)
        assert thread.is_alive()
    finally:
        cancel.cancel()
        thread.join()
    assert results[0].outcome is Outcome.CANCELLED
    assert usage.memory_bytes == results[0].peak_memory_bytes


def test_a_spinning_guest_accrues_cpu_and_still_times_out(load: Load) -> None:
    seen: list[float] = []
    usage, loop = Usage(seen.append), load("loop")
    before = time.thread_time()
    result = run_instance(loop, InstanceSpec(timeout_seconds=0.5), None, usage)
    spent = time.thread_time() - before
    assert result.outcome is Outcome.TIMED_OUT  # sampling keeps the deadline's verdict
    # All of this thread's CPU time in the run is the guest's (how much it got depends on
    # the machine's load), passed on in many samples along the way.
    assert spent > 0.02 and len(seen) > 3
    assert spent - 0.005 < usage.cpu_seconds <= spent
    assert abs(sum(seen) - usage.cpu_seconds) < 1e-9
