"""A bounded, thread-safe ring of an instance's output lines, so logs never grow without limit."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

DEFAULT_MAX_LINES = 1000
# Longer lines are split; a guest writing without newlines cannot hold memory hostage.
DEFAULT_MAX_LINE_BYTES = 16 * 1024


@dataclass(frozen=True)
class LogLine:
    seq: int  # 1, 2, ... per buffer; gaps mean lines were dropped before a follower read them
    stream: str  # "stdout" | "stderr"
    text: str
    time: float  # time.time() when the line was completed


class LogBuffer:
    """The last `max_lines` lines of one instance's stdout and stderr.

    `sink(stream)` gives a callable for InstanceSpec.stdout/stderr; it is called from wasmtime's
    I/O threads, possibly several at once. Partial lines wait for their newline (per stream)
    until `close()`.
    """

    def __init__(
        self, max_lines: int = DEFAULT_MAX_LINES, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        if max_lines < 1 or max_line_bytes < 1:
            raise ValueError("max_lines and max_line_bytes must be >= 1")
        self.max_lines = max_lines
        self.max_line_bytes = max_line_bytes
        self._lines: deque[LogLine] = deque(maxlen=max_lines)
        self._partial: dict[str, bytearray] = {}
        self._seq = 0
        self._closed = False
        self._cond = threading.Condition()

    def sink(self, stream: str = "stdout") -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            self.write(stream, data)

        return write

    def write(self, stream: str, data: bytes) -> None:
        with self._cond:
            if self._closed:
                return
            buf = self._partial.setdefault(stream, bytearray())
            buf += data
            start = 0
            added = False
            while True:
                nl = buf.find(b"\n", start)
                end = nl if nl >= 0 and nl - start <= self.max_line_bytes else -1
                if end < 0 and len(buf) - start >= self.max_line_bytes:
                    end = start + self.max_line_bytes
                    self._append(stream, buf[start:end])
                    start = end
                    added = True
                    continue
                if end < 0:
                    break
                self._append(stream, buf[start:end])
                start = end + 1
                added = True
            del buf[:start]
            if added:
                self._cond.notify_all()

    def _append(self, stream: str, raw: bytes | bytearray) -> None:
        self._seq += 1
        text = bytes(raw).removesuffix(b"\r").decode("utf-8", errors="replace")
        self._lines.append(LogLine(self._seq, stream, text, time.time()))

    def close(self) -> None:
        """Flush partial lines and end every follower; later writes are ignored."""
        with self._cond:
            if self._closed:
                return
            for stream, buf in self._partial.items():
                if buf:
                    self._append(stream, buf)
            self._partial.clear()
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_seq(self) -> int:
        return self._seq

    def tail(self, n: int | None = None) -> list[LogLine]:
        """The last n lines (all kept lines when n is None)."""
        with self._cond:
            lines = list(self._lines)
        if n is None:
            return lines
        return lines[-n:] if n > 0 else []

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
                batch = [line for line in self._lines if line.seq > last]
                closed = self._closed
            yield from batch
            if batch:
                last = batch[-1].seq
            elif closed:
                return
