"""An instance's output lines: a ring bounded in bytes, and the same lines in its CRI log file.

Output arrives in chunks (a pipe read, a request's stderr), never a Python call per guest
write. A chunk is cut into lines once (`split_lines`), kept in the ring for the agent API, and
written to the instance's file (runtime/logfiles.py) in one write(), in CRI format.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import NamedTuple

from wasmlet.api.logs import format_timestamp
from wasmlet_agent.runtime.logfiles import LogFile

DEFAULT_MAX_BYTES = 128 * 1024
# Longer lines are split (`P` in the file); a guest writing without newlines cannot hold
# memory hostage.
DEFAULT_MAX_LINE_BYTES = 16 * 1024
# What a kept line costs beyond its text (the LogLine and str objects), so that a flood of
# empty lines is bounded too.
LINE_OVERHEAD_BYTES = 128

Segment = tuple[bytes, bool]  # (line without its newline, partial: cut at the line limit)


def split_lines(pending: bytearray, data: bytes, max_line_bytes: int) -> list[Segment]:
    """Add `data` to `pending` (a stream's unfinished line) and take out what is complete:
    lines ended by a newline (`\\r\\n` too) and pieces of `max_line_bytes` of longer ones."""
    pending += data
    out: list[Segment] = []
    start = 0
    while True:
        nl = pending.find(b"\n", start, start + max_line_bytes + 1)
        if nl >= 0:
            out.append((bytes(pending[start:nl]).removesuffix(b"\r"), False))
            start = nl + 1
        elif len(pending) - start >= max_line_bytes:
            out.append((bytes(pending[start : start + max_line_bytes]), True))
            start += max_line_bytes
        else:
            break
    del pending[:start]
    return out


def cri_lines(stream: str, segments: list[Segment], time_ns: int) -> bytes:
    """`<RFC3339Nano> <stream> <F|P> <text>\\n` per segment (the CRI log format)."""
    stamp = format_timestamp(time_ns).encode()
    head = b"%s %s " % (stamp, stream.encode())
    return b"".join(head + (b"P " if partial else b"F ") + raw + b"\n" for raw, partial in segments)


class LogLine(NamedTuple):  # a tuple, not a frozen dataclass: made per line, ~5x cheaper
    seq: int  # 1, 2, ... per buffer; gaps mean lines were dropped before a follower read them
    stream: str  # "stdout" | "stderr"
    text: str
    time_ns: int  # Unix time (ns) the line was read from the guest; the file has the same
    partial: bool = False  # a piece of a longer line (the rest follows)

    @property
    def time(self) -> float:
        return self.time_ns / 1e9


class LogBuffer:
    """The newest lines of one instance's stdout and stderr, at most `max_bytes` of them (each
    line counted as its text plus LINE_OVERHEAD_BYTES), also appended to `file` if given.

    `write(stream, data)` may be called from several threads. Unfinished lines wait for their
    newline (per stream) until `flush()` (a run or request ended) or `close()`.
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        file: LogFile | None = None,
    ) -> None:
        if max_bytes < 1 or max_line_bytes < 1:
            raise ValueError("max_bytes and max_line_bytes must be >= 1")
        self.max_bytes = max_bytes
        self.max_line_bytes = max_line_bytes
        self.file = file
        self._lines: deque[tuple[LogLine, int]] = deque()  # (line, its cost in bytes)
        self._bytes = 0
        self._partial: dict[str, bytearray] = {}
        self._seq = 0
        self._closed = False
        self._cond = threading.Condition()

    def sink(self, stream: str = "stdout") -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            self.write(stream, data)

        return write

    def complete_sink(self, stream: str) -> Callable[[bytes], None]:
        """A sink for output that arrives whole (an HTTP request's stderr after its run): an
        unfinished last line ends with the call instead of waiting for the next request."""

        def write(data: bytes) -> None:
            self.write(stream, data, flush=True)

        return write

    def write(self, stream: str, data: bytes, *, flush: bool = False) -> None:
        with self._cond:
            if self._closed:
                return
            pending = self._partial.setdefault(stream, bytearray())
            segments = split_lines(pending, data, self.max_line_bytes)
            if flush and pending:
                segments.append((bytes(pending), False))
                pending.clear()
            self._add(stream, segments)

    def flush(self) -> None:
        """End every unfinished line (the run that wrote it is over)."""
        with self._cond:
            for stream, pending in self._partial.items():
                if pending:
                    self._add(stream, [(bytes(pending), False)])
                    pending.clear()

    def _add(self, stream: str, segments: list[Segment]) -> None:
        if not segments:
            return
        now = time.time_ns()
        if self.file is not None:
            self.file.append(cri_lines(stream, segments, now))
        for raw, partial in segments:
            self._seq += 1
            line = LogLine(self._seq, stream, raw.decode("utf-8", errors="replace"), now, partial)
            cost = len(raw) + LINE_OVERHEAD_BYTES
            self._lines.append((line, cost))
            self._bytes += cost
        while self._bytes > self.max_bytes and len(self._lines) > 1:
            self._bytes -= self._lines.popleft()[1]
        self._cond.notify_all()

    def close(self) -> None:
        """Flush unfinished lines, close the file and end every follower; later writes are
        ignored."""
        with self._cond:
            if self._closed:
                return
            self.flush()
            self._partial.clear()
            self._closed = True
            if self.file is not None:
                self.file.close()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def kept_bytes(self) -> int:
        return self._bytes

    def tail(self, n: int | None = None) -> list[LogLine]:
        """The last n lines (all kept lines when n is None)."""
        with self._cond:
            lines = [line for line, _ in self._lines]
        if n is None:
            return lines
        return lines[-n:] if n > 0 else []

    def after(self, seq: int) -> list[LogLine]:
        """Kept lines newer than `seq` (a follower's position)."""
        with self._cond:
            return [line for line, _ in self._lines if line.seq > seq]

    def text(self, n: int | None = None) -> str:
        return "".join(f"{line.text}\n" for line in self.tail(n))

    def follow(
        self, since: int | None = None, *, timeout: float | None = None
    ) -> Iterator[LogLine]:
        """Yield lines after seq `since` (default: from now on) as they arrive.

        Ends when the buffer is closed, or when no line comes within `timeout` seconds.
        A follower slower than the ring skips the lines that fell out of it.
        """
        last = self.last_seq if since is None else since

        def ready() -> bool:
            return self._seq > last or self._closed

        while True:
            with self._cond:
                if not self._cond.wait_for(ready, timeout=timeout):
                    return
                batch = [line for line, _ in self._lines if line.seq > last]
                closed = self._closed
            yield from batch
            if batch:
                last = batch[-1].seq
            elif closed:
                return
