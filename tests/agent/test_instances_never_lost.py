"""No instance is ever lost: whatever fails around a start, the agent backs off and converges.

Faults are injected where nothing real can produce them on cue: an object lookup that fails
like an API server answering 429 or restarting, and a module evicted from the disk cache
between fetch and compile. Everything else is the real agent.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import NS, Objects, wasm_app
from wasmlet.api.placements import Reason
from wasmlet_agent.cache import Cache
from wasmlet_agent.lifecycle import State

FAST_BACKOFF = {"initialSeconds": 0.1, "maxSeconds": 0.5}
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds", "namespace": NS},
    "data": {"token": base64.b64encode(b"t").decode()},
}


class FlakyObjects(Objects):
    """Secrets read fail `failures` times with an error the agent does not expect."""

    def __init__(self, docs: list[Mapping[str, Any]], failures: int) -> None:
        super().__init__(docs)
        self.failures = failures
        self.failed = 0
        self._lock = threading.Lock()

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        with self._lock:
            if self.failed < self.failures:
                self.failed += 1
                raise RuntimeError("(429) Too Many Requests")
        return super().secret(namespace, name)


def test_unexpected_lookup_errors_back_off_and_every_instance_comes_up(
    start: StartAgent, oci: OciModule
) -> None:
    objects = FlakyObjects([SECRET], failures=6)
    agent = start(objects)
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    agent.apply(wasm_app("steady", oci("long"), replicas=3, env=env, backoff=FAST_BACKOFF))
    seen_agent_error = agent.wait_report(
        "steady",
        lambda r: any(s.reason == Reason.AGENT_ERROR for s in r.instances),
        "an instance in BackOff with AgentError",
    )
    assert all(s.state is not State.STOPPED for s in seen_agent_error.instances)
    rep = agent.wait_report("steady", lambda r: r.ready == 3, "all 3 instances running")
    assert rep.replicas == 3 and objects.failed == 6
    assert {s.state for s in rep.instances} == {State.RUNNING}


@pytest.fixture
def evict_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The first compile finds its module evicted (as a concurrent LRU eviction would)."""
    calls: list[int] = []
    real = Cache.get_or_compile

    def get_or_compile(self: Cache, *args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError("module evicted between fetch and compile")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Cache, "get_or_compile", get_or_compile)
    yield calls


def test_module_evicted_between_fetch_and_compile_is_retried(
    start: StartAgent, oci: OciModule, evict_once: list[int], tmp_path: Any
) -> None:
    agent = start(cache_dir=tmp_path)  # an empty cache: the module is fetched and compiled
    agent.apply(wasm_app("evicted", oci("long"), replicas=2, backoff=FAST_BACKOFF))
    agent.wait_report(
        "evicted", lambda r: r.problem is not None and r.problem[0] == Reason.AGENT_ERROR,
        "the eviction reported as AgentError",
    )  # fmt: skip
    rep = agent.wait_report("evicted", lambda r: r.ready == 2, "both instances running")
    assert rep.replicas == 2 and len(evict_once) >= 2
