"""Starts helper processes with logs in a file and stops them by pid, never by name."""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

_PR_SET_PDEATHSIG = 1
# Resolved before any fork: the child may only make the raw call.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


class ProcessError(RuntimeError):
    """A helper process failed to start or died; the message names its log file."""


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        # SIGKILL the child if we die without stopping it (pytest killed by a CI timeout, ...).
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("r", errors="replace") as f:
            return "".join(collections.deque(f, maxlen=lines))
    except FileNotFoundError:
        return ""


class ManagedProcess:
    """One child process whose stdout and stderr go to `log_path`."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._popen = popen

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Starts `argv` in its own session (a Ctrl-C in the terminal reaches only us, and we stop
        children in order). Started from the main thread, the child is killed if we die."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # The pdeathsig fires when the forking *thread* exits, so only the main thread sets it.
        on_main = threading.current_thread() is threading.main_thread()
        with log_path.open("ab") as log:
            try:
                popen = subprocess.Popen(
                    [os.fspath(a) for a in argv],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env) if env is not None else None,
                    cwd=cwd,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(os.getpid()) if on_main else None,
                )
            except OSError as e:
                raise ProcessError(f"cannot start {name} ({argv[0]}): {e}") from e
        return cls(name, popen, log_path)

    @property
    def argv(self) -> list[str]:
        """The command line it was started with (to start it again)."""
        return [str(a) for a in self._popen.args]  # type: ignore[union-attr]

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def alive(self) -> bool:
        return self._popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def describe_exit(self, lines: int = 20) -> str:
        """Why the process is gone: its exit status, log path and the log's last lines."""
        code = self._popen.poll()
        status = (
            f"was killed by signal {-code}"
            if code is not None and code < 0
            else f"exited with code {code}"
        )
        return (
            f"{self.name} (pid {self.pid}) {status}; log: {self.log_path}\n"
            f"--- last lines of {self.log_path.name} ---\n{self.log_tail(lines)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns once the process is reaped."""
        if self._popen.poll() is not None:
            return
        self._popen.send_signal(signal.SIGTERM)
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
