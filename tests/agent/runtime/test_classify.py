"""classify(): one reading of how a run ended, for core modules and components alike."""

from __future__ import annotations

import pytest

from wasmlet_agent.runtime.instances import Outcome, classify

LIMIT = 1 << 20  # 1 MiB


@pytest.mark.parametrize(
    ("error", "exit_code", "stopped_by", "peak", "want"),
    [
        (None, 0, None, 65536, Outcome.EXITED),
        (None, 3, None, 65536, Outcome.EXITED),  # a plain failure exit
        (None, 1, None, LIMIT, Outcome.OUT_OF_MEMORY),  # exited at its memory limit
        (None, 1, None, None, Outcome.EXITED),  # a component: memory unknown
        (RuntimeError("wasm trap: interrupt"), None, Outcome.TIMED_OUT, 65536, Outcome.TIMED_OUT),
        (RuntimeError("x"), None, Outcome.CANCELLED, None, Outcome.CANCELLED),
        (RuntimeError("all fuel consumed by WebAssembly"), None, None, 65536, Outcome.OUT_OF_FUEL),
        (RuntimeError("all fuel consumed by WebAssembly"), None, None, None, Outcome.OUT_OF_FUEL),
        (RuntimeError("unreachable executed"), None, None, LIMIT, Outcome.OUT_OF_MEMORY),
        (RuntimeError("unreachable executed"), None, None, 65536, Outcome.TRAPPED),
        (RuntimeError("memory size exceeds the limit"), None, None, None, Outcome.OUT_OF_MEMORY),
        (RuntimeError("unreachable executed"), None, None, None, Outcome.TRAPPED),
    ],
)
def test_classify(
    error: Exception | None,
    exit_code: int | None,
    stopped_by: Outcome | None,
    peak: int | None,
    want: Outcome,
) -> None:
    outcome, _cause, _full = classify(error, exit_code, stopped_by, peak, LIMIT)
    assert outcome is want


def test_classify_names_the_memory_it_reached() -> None:
    _, cause, _ = classify(None, 1, None, LIMIT, LIMIT)
    assert f"reached {LIMIT} of the {LIMIT} bytes allowed" in cause
