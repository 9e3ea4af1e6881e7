"""The serving processes' contract with the agent: messages, shared counts, merged metrics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from wasmlet_agent.metrics import MergingRegistry
from wasmlet_agent.runtime.instances import InstanceSpec, Preopen
from wasmlet_agent.serving_counters import NODE_SLOT, Field, Peers, SharedCounts
from wasmlet_agent.serving_messages import (
    STDERR_CHUNK_BYTES,
    decode,
    encode,
    stderr_messages,
    template_from_wire,
    template_to_wire,
)


def test_a_template_crosses_as_data_and_comes_back_equal() -> None:
    spec = InstanceSpec(
        args=("-v",), env={"A": "1", "B": "x=y"},
        preopens=(Preopen("/host/d", "/data", True), Preopen("/host/c", "/cfg")),
        memory_limit_bytes=1 << 20, timeout_seconds=2.5, fuel=1000, program_name="app.wasm",
        stderr=lambda _: None,
    )  # fmt: skip
    back, wants_stderr = template_from_wire(decode(encode({"op": "t", **template_to_wire(spec)})))
    assert wants_stderr  # the sink itself stays in the agent
    assert back == InstanceSpec(
        args=spec.args, env=spec.env, preopens=spec.preopens, memory_limit_bytes=1 << 20,
        timeout_seconds=2.5, fuel=1000, program_name="app.wasm",
    )  # fmt: skip


def test_stderr_is_split_to_fit_a_datagram_and_junk_is_refused() -> None:
    messages = stderr_messages(("ns", "app"), "r1", b"e" * (2 * STDERR_CHUNK_BYTES + 1))
    assert len(messages) == 3
    assert all(len(encode(m)) < 100 * 1024 for m in messages)
    for junk in (b"[1]", b'{"no":"op"}'):
        with pytest.raises(ValueError):
            decode(junk)


def test_counts_are_summed_over_processes_and_a_dead_ones_are_given_back() -> None:
    counts = SharedCounts.create(processes=3, slots=4)
    try:
        # Another mapping of the same memfd, as a serving process has.
        theirs = SharedCounts(os.dup(counts.fd), 3, 4)
        a, b = Peers(counts, 2, 0), Peers(theirs, 2, 1)
        a.publish(Field.INFLIGHT, 3)
        b.publish(Field.INFLIGHT, 2)
        Peers(theirs, NODE_SLOT, 1).publish(Field.BUDGET, 100)
        assert a.others(Field.INFLIGHT) == 2 and b.others(Field.INFLIGHT) == 3
        assert counts.total(2, Field.INFLIGHT) == 5 and counts.total(1, Field.INFLIGHT) == 0
        counts.clear_process(1)
        assert a.others(Field.INFLIGHT) == 0 and counts.total(NODE_SLOT, Field.BUDGET) == 0
        theirs.close()
        os.close(theirs.fd)
    finally:
        counts.close()
        os.close(counts.fd)


def test_merged_metrics_have_one_family_and_one_series_per_label_set(tmp_path: Path) -> None:
    """However many processes (and restarts) wrote them, the series are one per label set."""
    registry = MergingRegistry()
    own = Counter("wasmlet_http_requests", "h", ["namespace", "app", "code"], registry=registry)
    own.labels("ns", "a", "200").inc()  # the agent's own, in-process serving
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    # What 5 serving process ids left behind (prometheus-client's multiprocess file format).
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    for pid in range(100, 105):
        d = MmapedDict(str(tmp_path / f"counter_{pid}.db"))
        for code in ("200", "503"):
            key = mmap_key("wasmlet_http_requests", "wasmlet_http_requests_total",
                           ["namespace", "app", "code"], ["ns", "a", code], "h")  # fmt: skip
            d.write_value(key, 1.0, 0.0)
        d.close()
    text = generate_latest(registry).decode()
    assert text.count("# TYPE wasmlet_http_requests_total counter") == 1
    series = [line for line in text.splitlines() if line.startswith("wasmlet_http_requests_total{")]
    assert sorted(series) == [
        'wasmlet_http_requests_total{app="a",code="200",namespace="ns"} 6.0',
        'wasmlet_http_requests_total{app="a",code="503",namespace="ns"} 5.0',
    ]
    assert (
        registry.get_sample_value(
            "wasmlet_http_requests_total", {"namespace": "ns", "app": "a", "code": "200"}
        )
        == 6.0
    )
    assert isinstance(registry, CollectorRegistry)
