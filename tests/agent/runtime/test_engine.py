"""The engine: fingerprints that key precompiled artifacts, and the epoch ticker behind timeouts."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from importlib import metadata

import pytest

from wasmlet_agent.runtime import (
    EngineConfig,
    InstanceSpec,
    LoadedModule,
    Outcome,
    WasmEngine,
    engine_fingerprint,
    run_instance,
)

# What the module cache accepts as a file name.
CACHE_FINGERPRINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def test_fingerprint_is_a_safe_file_name_naming_the_wasmtime_version() -> None:
    fp = engine_fingerprint()
    assert CACHE_FINGERPRINT.match(fp)
    assert metadata.version("wasmtime") in fp


def test_fingerprint_is_stable_and_ignores_runtime_only_settings() -> None:
    assert engine_fingerprint(EngineConfig()) == engine_fingerprint(EngineConfig())
    assert engine_fingerprint(EngineConfig(tick_seconds=0.5)) == engine_fingerprint()
    assert engine_fingerprint(EngineConfig(parallel_compilation=False)) == engine_fingerprint()


@pytest.mark.parametrize(
    "config",
    [EngineConfig(consume_fuel=False), EngineConfig(cranelift_opt_level="none")],
)
def test_fingerprint_changes_with_code_affecting_settings(config: EngineConfig) -> None:
    assert engine_fingerprint(config) != engine_fingerprint()


def test_engine_fingerprint_matches_its_config() -> None:
    eng = WasmEngine(EngineConfig(consume_fuel=False), start=False)
    assert eng.fingerprint == engine_fingerprint(EngineConfig(consume_fuel=False))


def test_ticker_start_and_stop_are_idempotent() -> None:
    eng = WasmEngine(start=False)
    assert not eng.ticking
    eng.start()
    eng.start()
    assert eng.ticking
    eng.stop()
    eng.stop()
    assert not eng.ticking
    with eng:
        assert eng.ticking
    assert not eng.ticking


def test_bad_tick_is_refused() -> None:
    with pytest.raises(ValueError, match="tick_seconds"):
        WasmEngine(EngineConfig(tick_seconds=0), start=False)


def test_timeouts_are_driven_by_the_ticker(guests: dict[str, object]) -> None:
    """With the ticker stopped a looping guest runs on; starting it enforces the deadline."""
    eng = WasmEngine(start=False)
    loop = LoadedModule.from_file(eng, str(guests["loop"]))
    restart = threading.Timer(0.5, eng.start)
    restart.start()
    try:
        result = run_instance(loop, InstanceSpec(timeout_seconds=0.05))
    finally:
        restart.cancel()
        eng.stop()
    assert result.outcome is Outcome.TIMED_OUT
    assert result.run_seconds >= 0.5  # not before the ticker came back


def test_one_engine_serves_many_modules(load: Callable[[str], LoadedModule]) -> None:
    assert load("hello").engine is load("exit").engine
