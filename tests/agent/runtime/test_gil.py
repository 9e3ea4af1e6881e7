"""The short wasmtime calls of an instance keep the GIL; the ones that run guest code do not."""

from __future__ import annotations

import ctypes
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from wasmtime import _bindings

from wasmlet_agent.runtime import gil
from wasmlet_agent.runtime.cgi import CgiRequest, invoke_cgi
from wasmlet_agent.runtime.instances import InstanceSpec, Outcome, run_instance
from wasmlet_agent.runtime.modules import LoadedModule

GUEST_CALLS = {"wasmtime_instance_pre_instantiate", "wasmtime_func_call"}


def test_every_short_call_exists_and_holds_the_gil() -> None:
    # A wasmtime-py upgrade that renames one would silently bring the GIL handoffs back.
    for name in gil.SHORT_CALLS:
        assert hasattr(_bindings, f"_{name}"), name
        assert gil.holds_gil(name), name


def test_calls_that_run_guest_code_release_the_gil() -> None:
    for name in GUEST_CALLS:
        assert not gil.holds_gil(name), name


@pytest.fixture
def calls() -> Iterator[Counter[str]]:
    """Counts every call the bindings make into wasmtime while the test runs."""
    counts: Counter[str] = Counter()
    saved = {}
    for attr in dir(_bindings):
        func = getattr(_bindings, attr)
        if attr.startswith("_was") and isinstance(func, ctypes._CFuncPtr):
            saved[attr] = func

            def counting(*args: object, _f: Callable[..., object] = func, _n: str = attr[1:]):  # type: ignore[no-untyped-def]
                counts[_n] += 1
                return _f(*args)

            counting.argtypes = func.argtypes  # type: ignore[attr-defined]
            setattr(_bindings, attr, counting)
    try:
        yield counts
    finally:
        for attr, func in saved.items():
            setattr(_bindings, attr, func)


def test_an_instance_per_request_makes_no_other_gil_releasing_call(
    load: Callable[[str], LoadedModule], calls: Counter[str]
) -> None:
    module = load("cgi")
    spec = InstanceSpec(stderr=lambda _: None, memory_limit_bytes=16 << 20, timeout_seconds=10)
    invoke_cgi(module, CgiRequest("GET", "/x"), spec)  # loading the module is not per request
    calls.clear()
    response = invoke_cgi(module, CgiRequest("GET", "/x"), spec)
    assert response.status == 200
    made = set(calls)
    assert made >= GUEST_CALLS
    assert made - GUEST_CALLS <= set(gil.SHORT_CALLS), made - GUEST_CALLS - set(gil.SHORT_CALLS)


def test_a_computing_guest_lets_other_threads_run(load: Callable[[str], LoadedModule]) -> None:
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        started = ticks
        result = run_instance(load("loop"), InstanceSpec(timeout_seconds=0.5))
        during = ticks - started
    finally:
        stop.set()
        counter.join()
    assert result.outcome is Outcome.TIMED_OUT
    # ~500 at 1 ms each with the GIL free; a guest holding it would leave the counter at ~0.
    assert during > 50, during
