"""The per-instance log ring: line splitting (incl. partial lines), the byte bound, tail and
follow under concurrent writers, and the CRI file lines it writes."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from wasmlet_agent.runtime import Cancel, InstanceSpec, LoadedModule, Outcome, run_instance
from wasmlet_agent.runtime.logs import (
    LINE_OVERHEAD_BYTES,
    LogBuffer,
    LogLine,
    cri_lines,
    split_lines,
)


def texts(lines: list[LogLine]) -> list[str]:
    return [line.text for line in lines]


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        ([b"one\ntwo\n"], ["one", "two"]),
        ([b"sp", b"lit\n"], ["split"]),
        ([b"crlf\r\n"], ["crlf"]),
        ([b"\n\n"], ["", ""]),
        ([b"caf\xc3", b"\xa9\n"], ["caf\u00e9"]),  # a UTF-8 sequence cut between writes
        ([b"bad \xff byte\n"], ["bad \ufffd byte"]),
        ([b"no newline yet"], []),
    ],
)
def test_lines_are_split_on_newlines(writes: list[bytes], expected: list[str]) -> None:
    buf = LogBuffer()
    for data in writes:
        buf.write("stdout", data)
    assert texts(buf.tail()) == expected


def test_close_flushes_partial_lines_and_ignores_later_writes() -> None:
    buf = LogBuffer()
    buf.write("stdout", b"partial")
    buf.write("stderr", b"err part")
    buf.close()
    buf.write("stdout", b"late\n")
    assert sorted((line.stream, line.text) for line in buf.tail()) == [
        ("stderr", "err part"),
        ("stdout", "partial"),
    ]
    assert buf.closed


def test_streams_keep_separate_partial_lines() -> None:
    buf = LogBuffer()
    out, err = buf.sink("stdout"), buf.sink("stderr")
    out(b"out-")
    err(b"err-")
    err(b"line\n")
    out(b"line\n")
    assert [(line.stream, line.text) for line in buf.tail()] == [
        ("stderr", "err-line"),
        ("stdout", "out-line"),
    ]


def test_ring_is_bounded_in_bytes_not_lines() -> None:
    buf = LogBuffer(max_bytes=3 * (1 + LINE_OVERHEAD_BYTES))
    buf.write("stdout", b"".join(f"{i}\n".encode() for i in range(10)))
    assert texts(buf.tail()) == ["7", "8", "9"]
    assert [line.seq for line in buf.tail()] == [8, 9, 10]
    assert buf.last_seq == 10
    assert buf.kept_bytes == 3 * (1 + LINE_OVERHEAD_BYTES)
    # Long lines take more of the budget than short ones: one 300-byte line evicts others.
    buf.write("stdout", b"x" * 300 + b"\n")
    assert texts(buf.tail()) == ["x" * 300]  # the newest line is kept even alone over budget
    big = LogBuffer(max_bytes=64 * 1024)
    for _ in range(100):
        big.write("stdout", b"y" * 4000 + b"\n")
    assert big.kept_bytes <= 64 * 1024 and len(big.tail()) == 64 * 1024 // (4001 + 127)


@pytest.mark.parametrize(
    ("writes", "expected", "left"),
    [
        ([b"ab\ncd"], [(b"ab", False)], b"cd"),
        ([b"abcdefghij"], [(b"abcd", True), (b"efgh", True)], b"ij"),
        ([b"abcd\n"], [(b"abcd", False)], b""),  # exactly the limit, then its newline
        ([b"abcd", b"\n"], [(b"abcd", True), (b"", False)], b""),
        ([b"ab\r\n\n"], [(b"ab", False), (b"", False)], b""),
    ],
)
def test_split_lines_marks_pieces_of_long_lines_partial(
    writes: list[bytes], expected: list[tuple[bytes, bool]], left: bytes
) -> None:
    pending = bytearray()
    got = [seg for data in writes for seg in split_lines(pending, data, 4)]
    assert got == expected and bytes(pending) == left


def test_cri_lines_carry_time_stream_and_tag() -> None:
    out = cri_lines("stderr", [(b"part", True), (b"end", False)], 1_764_588_967_000_000_001)
    assert out == (
        b"2025-12-01T11:36:07.000000001Z stderr P part\n"
        b"2025-12-01T11:36:07.000000001Z stderr F end\n"
    )


def test_flush_ends_a_line_without_its_newline() -> None:
    buf = LogBuffer()
    buf.write("stdout", b"no newline")
    assert buf.tail() == []
    buf.flush()
    buf.write("stdout", b"next\n")
    assert texts(buf.tail()) == ["no newline", "next"]
    buf.write("stderr", b"whole request", flush=True)
    assert texts(buf.tail())[-1] == "whole request"


def test_long_lines_are_split() -> None:
    buf = LogBuffer(max_line_bytes=4)
    buf.write("stdout", b"abcdefghij")
    assert texts(buf.tail()) == ["abcd", "efgh"]
    assert [line.partial for line in buf.tail()] == [True, True]
    buf.write("stdout", b"\nxy\n")
    assert texts(buf.tail()) == ["abcd", "efgh", "ij", "xy"]


@pytest.mark.parametrize(("n", "expected"), [(2, ["c", "d"]), (10, ["a", "b", "c", "d"]), (0, [])])
def test_tail(n: int, expected: list[str]) -> None:
    buf = LogBuffer()
    buf.write("stdout", b"a\nb\nc\nd\n")
    assert texts(buf.tail(n)) == expected
    assert buf.text(2) == "c\nd\n"


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        LogBuffer(max_bytes=0)


def test_follow_from_a_seq_then_times_out() -> None:
    buf = LogBuffer()
    buf.write("stdout", b"a\nb\nc\n")
    assert texts(list(buf.follow(since=1, timeout=0.05))) == ["b", "c"]
    assert list(buf.follow(timeout=0.05)) == []  # from now on: nothing new


def test_follow_sees_lines_as_they_arrive_and_ends_on_close() -> None:
    buf = LogBuffer()
    seen: list[str] = []
    started = threading.Event()

    def reader() -> None:
        started.set()
        seen.extend(texts(list(buf.follow(since=0))))

    t = threading.Thread(target=reader)
    t.start()
    started.wait()
    for i in range(100):
        buf.write("stdout", f"line {i}\n".encode())
    buf.close()
    t.join(timeout=5)
    assert not t.is_alive()
    assert seen == [f"line {i}" for i in range(100)]


def test_slow_follower_skips_what_fell_out_of_the_ring() -> None:
    buf = LogBuffer(max_bytes=2 * (1 + LINE_OVERHEAD_BYTES))
    buf.write("stdout", b"1\n2\n3\n4\n")
    buf.close()
    assert [line.seq for line in buf.follow(since=0)] == [3, 4]


def test_concurrent_writers_lose_no_lines() -> None:
    buf = LogBuffer(max_bytes=10_000_000)

    def writer(w: int) -> None:
        sink = buf.sink(f"w{w}")
        for i in range(500):
            sink(f"{w}:{i}\n".encode())

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = buf.tail()
    assert len(lines) == 4000
    assert [line.seq for line in lines] == list(range(1, 4001))
    for w in range(8):
        assert [line.text for line in lines if line.stream == f"w{w}"] == [
            f"{w}:{i}" for i in range(500)
        ]


def test_buffer_as_an_instance_sink(load: Callable[[str], LoadedModule]) -> None:
    logs = LogBuffer(max_bytes=3 * (len("tick 10") + LINE_OVERHEAD_BYTES))
    cancel = Cancel()
    follower: list[str] = []

    def follow() -> None:
        for line in logs.follow(since=0):
            follower.append(line.text)
            if len(follower) == 5:
                cancel.cancel()

    t = threading.Thread(target=follow)
    t.start()
    result = run_instance(load("long"), InstanceSpec(stdout=logs.sink()), cancel)
    logs.close()
    t.join(timeout=5)
    assert result.outcome is Outcome.CANCELLED
    assert follower[:5] == [f"tick {i}" for i in range(5)]
    assert len(logs.tail()) == 3
