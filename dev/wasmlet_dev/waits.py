"""Polling with deadlines: wait until something holds, or check that it holds for a window.

One signature for dev tooling, tests and benchmarks: the check comes first, then `what`
(a phrase naming the condition, used in the error), then keywords.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TypeVar

from wasmlet_dev.processes import ManagedProcess, ProcessError

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
DEFAULT_INTERVAL = 0.05


class WaitTimeout(TimeoutError, AssertionError):
    """The condition did not hold in time; the message names it and the last value seen.

    A TimeoutError for tools, and an AssertionError in tests (a failed expectation there).
    """


def wait_until(
    check: Callable[[], T | None],
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    *,
    watch: Iterable[ManagedProcess] = (),
    retry_on: tuple[type[Exception], ...] = (Exception,),
) -> T:
    """Polls `check` until it returns something truthy, and returns that.

    An exception of a `retry_on` type counts as "not yet" (a server may be restarting) and is
    reported, chained, at the deadline. Raises WaitTimeout after `timeout` seconds, or
    ProcessError as soon as a watched process exits (with its log's tail).
    """
    watched = list(watch)
    deadline = time.monotonic() + timeout
    last: object = None
    error: Exception | None = None
    while True:
        for proc in watched:
            if not proc.alive():
                raise ProcessError(f"{proc.describe_exit()}\n(while waiting for {what})")
        try:
            value = check()
        except retry_on as e:
            last, error = e, e
        else:
            if value:
                return value
            last, error = value, None
        if time.monotonic() > deadline:
            logs = "".join(f"\n--- last lines of {p.log_path} ---\n{p.log_tail()}" for p in watched)
            raise WaitTimeout(
                f"timed out after {timeout:g}s waiting for {what} (last: {last!r}){logs}"
            ) from error
        time.sleep(interval)


def observe_for(
    window: float,
    check: Callable[[], object],
    what: str,
    *,
    interval: float = DEFAULT_INTERVAL,
) -> int:
    """Samples `check` for `window` seconds; the first falsy result or exception fails with
    AssertionError naming `what`. Returns how many samples held (at least one)."""
    deadline = time.monotonic() + window
    samples = 0
    while True:
        _hold(check, what, samples)
        samples += 1
        if time.monotonic() >= deadline:
            return samples
        time.sleep(interval)


def _hold(check: Callable[[], object], what: str, samples: int) -> None:
    try:
        value = check()
    except Exception as e:
        raise AssertionError(f"{what}: check raised after {samples} good samples: {e!r}") from e
    if not value:
        raise AssertionError(f"{what}: violated after {samples} good samples (got {value!r})")


class Observing:
    """`observe_for` in the background for as long as a with-block runs: the block's code
    changes something, and `check` must hold at every sample meanwhile. Raises on exit."""

    def __init__(
        self, check: Callable[[], object], what: str, *, interval: float = DEFAULT_INTERVAL
    ) -> None:
        self.check, self.what, self.interval = check, what, interval
        self.samples = 0
        self.violation: AssertionError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"observe {what}", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                _hold(self.check, self.what, self.samples)
            except AssertionError as e:
                self.violation = e
                return
            self.samples += 1
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Observing:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if exc is None:
            if self.violation is not None:
                raise self.violation
            if self.samples == 0:
                raise AssertionError(f"{self.what}: observed no sample at all")
