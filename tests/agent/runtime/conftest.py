"""Shared runtime fixtures: one engine per session and guests loaded once each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wasmlet_agent.runtime import LoadedModule, WasmEngine


@pytest.fixture(scope="session")
def engine() -> Iterator[WasmEngine]:
    eng = WasmEngine()
    yield eng
    eng.stop()


@pytest.fixture(scope="session")
def load(engine: WasmEngine, guests: dict[str, Path]) -> Callable[[str], LoadedModule]:
    """Guest name -> LoadedModule, compiled once per session."""
    cache: dict[str, LoadedModule] = {}

    def get(name: str) -> LoadedModule:
        if name not in cache:
            cache[name] = LoadedModule.from_file(engine, guests[name])
        return cache[name]

    return get
