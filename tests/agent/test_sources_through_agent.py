"""Module sources through a real Agent: OCI (tag, digest), ConfigMap, failures, cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import (
    NS,
    Objects,
    RunningAgent,
    TcpForwarder,
    configmap_doc,
    configmap_module,
    free_port,
    instance_threads,
    wait_until,
    wasm_app,
)
from wasmlet_agent.lifecycle import State
from wasmlet_dev.oci import push_wasm_artifact
from wasmlet_dev.registry import RegistryServer, start_registry

FAST = {"initialSeconds": 0.1, "maxSeconds": 0.5}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _completed(agent: RunningAgent, name: str) -> None:
    agent.wait_report(name, lambda r: r.instances[0].state is State.COMPLETED, "completed")


def _blobs(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "modules" / "blobs" / "sha256").iterdir())


def test_oci_by_tag_and_by_digest(
    start: StartAgent, registry: RegistryServer, guests: dict[str, Path]
) -> None:
    wasm = guests["hello"].read_bytes()
    pushed = push_wasm_artifact(registry, "sources/hello", "v1", wasm)
    agent = start()
    run_once = {"restartPolicy": "OnFailure", "env": [{"name": "GREETING", "value": "hi"}]}
    agent.apply(
        wasm_app("bytag", {"oci": {"reference": pushed.reference, "insecure": True}}, **run_once),
        wasm_app("bydigest", {"oci": {"reference": pushed.pinned, "insecure": True}}, **run_once),
        wasm_app(
            "verified",
            {"oci": {"reference": pushed.reference, "insecure": True}, "digest": digest_of(wasm)},
            **run_once,
        ),
    )
    for name in ("bytag", "bydigest", "verified"):
        _completed(agent, name)
        rep = agent.report(name)
        assert rep is not None and rep.digest == digest_of(wasm)
        assert "hi from wasm" in agent.api(f"/logs/default/{name}").text


def test_digest_mismatch_refuses_and_caches_nothing(
    start: StartAgent, registry: RegistryServer, guests: dict[str, Path], tmp_path: Path
) -> None:
    pushed = push_wasm_artifact(registry, "sources/mismatch", "v1", guests["hello"].read_bytes())
    wrong = digest_of(b"something else")
    agent = start(cache_dir=tmp_path)
    agent.apply(
        wasm_app(
            "pinned",
            {"oci": {"reference": pushed.reference, "insecure": True}, "digest": wrong},
            replicas=2,
            backoff=FAST,
        )
    )
    rep = agent.wait_report(
        "pinned",
        lambda r: (
            len(r.instances) == 2
            and all(s.state is State.BACK_OFF for s in r.instances)
            and all(s.reason == "DigestMismatch" for s in r.instances)
        ),
        "instances backing off with DigestMismatch",
    )
    assert rep.problem is not None and rep.problem[0] == "DigestMismatch"
    assert wrong in rep.problem[1]
    assert rep.ready == 0 and rep.digest is None
    # Retried with back-off, reported once.
    wait_until(
        lambda: (
            (agent.metric("wasmlet_module_pull_errors_total", reason="DigestMismatch") or 0) >= 2
        ),
        "a retry",
    )
    events = [e for e in agent.events_of("pinned") if e.reason == "DigestMismatch"]
    assert len(events) == 1 and events[0].type == "Warning"
    assert _blobs(tmp_path) == []
    assert not any((tmp_path / "modules" / "compiled").iterdir())


def test_unreachable_registry_backs_off_then_recovers(
    start: StartAgent, registry: RegistryServer, guests: dict[str, Path]
) -> None:
    push_wasm_artifact(registry, "sources/later", "v1", guests["hello"].read_bytes())
    port = free_port()  # nothing listens here yet
    agent = start()
    agent.apply(
        wasm_app(
            "later",
            {"oci": {"reference": f"127.0.0.1:{port}/sources/later:v1", "insecure": True}},
            restartPolicy="OnFailure",
            backoff=FAST,
        )
    )
    rep = agent.wait_report(
        "later",
        lambda r: (
            r.instances[0].state is State.BACK_OFF and r.instances[0].reason == "SourceUnreachable"
        ),
        "SourceUnreachable",
    )
    assert rep.problem is not None and f"127.0.0.1:{port}" in rep.problem[1]
    forwarder = TcpForwarder(port, registry.port)  # the registry comes up at that address
    try:
        _completed(agent, "later")
    finally:
        forwarder.close()
    assert "hello from wasm" in agent.api("/logs/default/later").text


def test_configmap_source(start: StartAgent, guests: dict[str, Path]) -> None:
    objects = Objects([configmap_doc("mod", {"hello.wasm": guests["hello"].read_bytes()})])
    agent = start(objects)
    agent.apply(
        wasm_app("cm", configmap_module("mod", "hello.wasm"), args=["a b"], restartPolicy="Never")
    )
    _completed(agent, "cm")
    log = agent.api("/logs/default/cm").text
    assert "hello from wasm" in log and "arg[1]=a b" in log


def test_not_wasm_is_refused(start: StartAgent, registry: RegistryServer, tmp_path: Path) -> None:
    pushed = push_wasm_artifact(registry, "sources/script", "v1", b"#!/bin/sh\necho hi\n")
    objects = Objects([configmap_doc("text", {"m.wasm": "(module)"})])
    agent = start(objects, cache_dir=tmp_path)
    agent.apply(
        wasm_app("oci", {"oci": {"reference": pushed.reference, "insecure": True}}, backoff=FAST),
        wasm_app("cm", configmap_module("text", "m.wasm"), backoff=FAST),
    )
    for name in ("oci", "cm"):
        rep = agent.wait_report(name, lambda r: r.problem is not None, "a problem")
        assert rep.problem is not None
        assert rep.problem[0] == "NotWasm"
        assert "not a WebAssembly module" in rep.problem[1]
        assert rep.instances[0].state is State.BACK_OFF
    assert _blobs(tmp_path) == []


def test_missing_import_names_the_import(start: StartAgent, guests: dict[str, Path]) -> None:
    objects = Objects([configmap_doc("mod", {"m.wasm": guests["missing_import"].read_bytes()})])
    agent = start(objects)
    agent.apply(wasm_app("linkfail", configmap_module("mod", "m.wasm"), backoff=FAST))
    rep = agent.wait_report("linkfail", lambda r: r.problem is not None, "a problem")
    assert rep.problem is not None
    reason, message = rep.problem
    assert reason == "InvalidModule"
    assert "wasi_snapshot_preview1::does_not_exist" in message
    (s,) = rep.instances
    assert s.state is State.BACK_OFF and s.reason == "InvalidModule"
    events = [e for e in agent.events_of("linkfail") if e.reason == "InvalidModule"]
    assert events and "does_not_exist" in events[0].message


@pytest.mark.parametrize("by", ["digest", "tag"])
def test_restarted_agent_starts_from_its_cache(
    start: StartAgent, guests: dict[str, Path], tmp_path: Path, by: str
) -> None:
    # A registry of this test's own: for a reference pinned by digest it is stopped before
    # the agent restarts, so the second agent could not pull even if it tried. A tag may
    # have moved, so its manifest is read again, but the module is not downloaded.
    private = start_registry(tmp_path / "registry")
    try:
        pushed = push_wasm_artifact(private, "cached/long", "v1", guests["long"].read_bytes())
        reference = pushed.pinned if by == "digest" else pushed.reference
        app = wasm_app("ticker", {"oci": {"reference": reference, "insecure": True}})
        cache = tmp_path / "cache"
        first = start(cache_dir=cache)
        first.apply(app)
        first.wait_report("ticker", lambda r: r.ready == 1, "running")
        assert first.metric("wasmlet_module_cache_misses_total", kind="compiled") == 1
        pulls = first.metric(
            "wasmlet_cold_start_seconds_count", namespace=NS, app="ticker", phase="pull"
        )
        assert pulls == 1
        first.stop()
        if by == "digest":
            private.stop()

        second = start(cache_dir=cache)
        second.apply(app)
        rep = second.wait_report("ticker", lambda r: r.ready == 1, "running from the cache")
    finally:
        private.stop()
    assert rep.digest == digest_of(guests["long"].read_bytes())
    assert second.metric("wasmlet_module_cache_hits_total", kind="compiled") == 1
    assert second.metric("wasmlet_module_cache_hits_total", kind="module") == 1
    assert not second.metric("wasmlet_module_cache_misses_total", kind="compiled")
    assert not second.metric("wasmlet_module_cache_misses_total", kind="module")
    # Loaded, not pulled or compiled.
    cold_start = "wasmlet_cold_start_seconds_count"
    assert second.metric(cold_start, namespace=NS, app="ticker", phase="load") == 1
    assert second.metric(cold_start, namespace=NS, app="ticker", phase="pull") is None
    assert second.metric(cold_start, namespace=NS, app="ticker", phase="compile") is None
    pulled = [e for e in second.events_of("ticker") if e.reason == "Pulled"]
    assert pulled and "from cache, precompiled" in pulled[0].message


def test_apps_share_a_loaded_module_until_none_uses_it(
    start: StartAgent, oci: OciModule, tmp_path: Path
) -> None:
    agent = start(cache_dir=tmp_path)
    cold_start = "wasmlet_cold_start_seconds_count"
    agent.apply(wasm_app("one", oci("long")))
    agent.wait_report("one", lambda r: r.ready == 1, "running")
    assert agent.metric(cold_start, namespace=NS, app="one", phase="load") == 1
    # Another app with the same module uses the copy in memory.
    agent.apply(wasm_app("one", oci("long")), wasm_app("two", oci("long")))
    agent.wait_report("two", lambda r: r.ready == 1, "running")
    assert agent.metric(cold_start, namespace=NS, app="two", phase="load") is None
    # Once no app uses it, it leaves memory; it comes back from the disk cache, precompiled.
    agent.apply()
    wait_until(lambda: not instance_threads(), "instances to stop")
    agent.apply(wasm_app("two", oci("long")))
    agent.wait_report("two", lambda r: r.ready == 1, "running again")
    assert agent.metric(cold_start, namespace=NS, app="two", phase="load") == 1
    assert agent.metric(cold_start, namespace=NS, app="two", phase="compile") is None
    assert agent.metric("wasmlet_module_cache_hits_total", kind="compiled") == 1
