"""Fixtures for tests that run the whole node agent: agents, and guests served by a registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.harness import RunningAgent, instance_threads, start_agent, wait_until
from wasmlet_dev.oci import push_wasm_artifact
from wasmlet_dev.registry import RegistryServer

StartAgent = Callable[..., RunningAgent]
OciModule = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One agent cache for the session, so each guest (Go's takes seconds) compiles once."""
    return tmp_path_factory.mktemp("agent-cache")


@pytest.fixture
def start(shared_cache: Path) -> Iterator[StartAgent]:
    """Start agents (on the shared cache unless `cache_dir` is given); all stopped after."""
    started: list[RunningAgent] = []

    def make(lookup: Any = None, cache_dir: Path | None = None, **config: Any) -> RunningAgent:
        agent = start_agent(cache_dir or shared_cache, lookup, **config)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.stop()
    # Every instance thread of every agent has ended: nothing leaks into the next test.
    wait_until(lambda: not instance_threads(), "instance threads to end", timeout=10)


@pytest.fixture(scope="session")
def oci(registry: RegistryServer, guests: dict[str, Path]) -> OciModule:
    """Guest name -> spec.module pulling it by tag from the test registry (pushed once)."""
    pushed: dict[str, str] = {}

    def module(name: str) -> dict[str, Any]:
        if name not in pushed:
            ref = push_wasm_artifact(registry, f"guests/{name}", "v1", guests[name].read_bytes())
            pushed[name] = ref.reference
        return {"oci": {"reference": pushed[name], "insecure": True}}

    return module
