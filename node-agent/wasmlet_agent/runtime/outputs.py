"""Guest stdout/stderr through a pipe per stream, drained by one reader thread per process.

wasmtime's `stdout_custom` calls Python on one of its I/O threads for every write; taking the
GIL there cost a printing `hello` ~4x its start. Here wasmtime writes to a pipe it opened as
a file (`/proc/self/fd/N`) and Python never runs while the guest writes:

- A run that ends within `delay` seconds is never seen by the reader: `finish()` reads what
  its pipes hold once, on the instance's own thread.
- A longer run is handed to the reader (epoll over every live pipe), so its lines reach the
  log while it runs, `delay` seconds late at most.

`finish()` reads the rest under the reader's lock, so every byte the guest wrote before its
run returned is in the log, in order per stream, before the caller reports the end. A guest
that writes faster than the reader drains blocks on the full pipe: back-pressure instead of
unbounded memory.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable

Write = Callable[[str, bytes], None]  # (stream, data), e.g. LogBuffer.write

DEFAULT_DELAY = 0.02
_CHUNK = 64 * 1024
_MAX_FREE_PIPES = 64


class Capture:
    """One run's stdout and stderr pipes; give the paths to InstanceSpec, then finish()."""

    __slots__ = ("_fds", "_reader", "due", "finished", "stderr_path", "stdout_path", "write")

    def __init__(self, reader: OutputReader, write: Write) -> None:
        self._reader, self.write = reader, write
        out_r, out_w, err_r, err_w = reader.take_pipes()
        # wasmtime opens these paths itself: a new, blocking file description of the pipe.
        self.stdout_path = f"/proc/self/fd/{out_w}"
        self.stderr_path = f"/proc/self/fd/{err_w}"
        self._fds = ((out_r, "stdout"), (err_r, "stderr"), (out_w, ""), (err_w, ""))
        self.due = time.monotonic() + reader.delay
        self.finished = False

    @property
    def readers(self) -> tuple[tuple[int, str], ...]:
        return self._fds[:2]

    def finish(self) -> None:
        """Read what the pipes still hold into `write`, then close them (idempotent)."""
        self._reader.finish(self)

    def release(self, reusable: bool) -> None:
        (out_r, _), (err_r, _), (out_w, _), (err_w, _) = self._fds
        self._reader.give_back((out_r, out_w, err_r, err_w), reusable)


def drain(fd: int, stream: str, write: Write) -> bool:
    """Read `fd` (non-blocking) until it is empty; False at end of file."""
    while True:
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return True
        if not data:
            return False
        write(stream, data)
        if len(data) < _CHUNK:  # a pipe read returns all it holds, up to the size asked
            return True


class OutputReader:
    """The one thread that drains the pipes of runs older than `delay` seconds."""

    def __init__(self, delay: float = DEFAULT_DELAY) -> None:
        self.delay = delay
        self._lock = threading.Lock()
        self._pending: collections.deque[Capture] = collections.deque()
        self._watched: dict[int, tuple[Capture, str]] = {}
        self._poll: select.epoll | None = None
        self._thread: threading.Thread | None = None
        # Drained pipes of ended runs, reused: a run then makes no pipe2 or close syscalls.
        self._free: list[tuple[int, int, int, int]] = []

    def take_pipes(self) -> tuple[int, int, int, int]:
        """(stdout read, stdout write, stderr read, stderr write), empty."""
        try:
            return self._free.pop()
        except IndexError:
            out_r, out_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            return out_r, out_w, err_r, err_w

    def give_back(self, fds: tuple[int, int, int, int], reusable: bool) -> None:
        if reusable and len(self._free) < _MAX_FREE_PIPES:
            self._free.append(fds)
            return
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def attach(self, write: Write) -> Capture:
        """Pipes for one run; `write(stream, data)` gets its output, from either thread."""
        capture = Capture(self, write)
        self._pending.append(capture)  # one atomic append: no lock, no syscall
        if self._thread is None:
            self._start()
        return capture

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._poll = select.epoll()
                self._thread = threading.Thread(target=self._run, name="outputs", daemon=True)
                self._thread.start()

    def finish(self, capture: Capture) -> None:
        with self._lock:
            if capture.finished:
                return
            capture.finished = True
            drained = False  # both pipes read to empty: they can serve another run
            try:
                for fd, _ in capture.readers:
                    if self._watched.pop(fd, None) is not None and self._poll is not None:
                        self._poll.unregister(fd)
                drained = all([drain(fd, stream, capture.write) for fd, stream in capture.readers])
            finally:
                capture.release(drained)

    @property
    def watched(self) -> int:
        """Pipes the reader thread is watching now (runs longer than `delay`)."""
        return len(self._watched)

    def _run(self) -> None:
        poll = self._poll
        assert poll is not None
        while True:
            pending = self._pending
            # A fixed tick, not the next due time: with runs starting every few hundred µs,
            # waking for each would cost every run a GIL hand-over.
            events = poll.poll(self.delay)
            with self._lock:
                now = time.monotonic()
                while pending and pending[0].due <= now:
                    capture = pending.popleft()
                    if capture.finished:
                        continue
                    for fd, stream in capture.readers:
                        self._watched[fd] = (capture, stream)
                        poll.register(fd, select.EPOLLIN)
                for fd, _ in events:
                    entry = self._watched.get(fd)
                    if entry is None:
                        continue  # finished since poll() returned
                    capture, stream = entry
                    try:
                        alive = drain(fd, stream, capture.write)
                    except Exception:  # a failing sink must not stop every other log
                        alive = False
                    if not alive:
                        del self._watched[fd]
                        poll.unregister(fd)


_READER = OutputReader()


def capture_output(write: Write) -> Capture:
    """Pipes for one run's stdout and stderr, drained by this process's one reader."""
    return _READER.attach(write)
