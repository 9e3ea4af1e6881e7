"""The agent's HTTP serving processes: started, kept in line with the apps, restarted.

The agent binds each HTTP app's listening socket itself (so a taken port is its
PortConflict, and the socket outlives any serving process) and passes a copy to every
serving process over its control socket (SOCK_SEQPACKET, JSON plus SCM_RIGHTS, see
`serving_messages.py`); all of them accept from the one queue. Whenever an app's serving
revision changes (seen by polling `Apps.http_revision`), each process is sent the revision's
per-request template and, once per module, the verified precompiled artifact as a sealed
memfd. An app counts as ready here once a process serves it and none answers it with 503.

A process that ends unexpectedly is logged, counted in wasmlet_http_serving_process_restarts,
reported as a ServingProcessRestarted Event on each HTTP app, and started again after a
back-off; connections the others hold are untouched, and new ones queue on the shared socket.

Long (~470 lines) on purpose: one process's whole life (spawn, handshake, revision sync,
exit, back-off, restart) reads top to bottom here; the wire format and the worker side are
in serving_messages.py and serving_worker.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from wasmlet.api.placements import Reason
from wasmlet_agent.backoff import next_delay
from wasmlet_agent.config import FrontLimits
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.revision import AppKey, EventSink
from wasmlet_agent.runtime.instances import InstanceSpec, Sink
from wasmlet_agent.serving_counters import NODE_SLOT, SharedCounts
from wasmlet_agent.serving_messages import (
    MAX_MESSAGE_BYTES,
    ServingState,
    app_message,
    decode,
    encode,
    key_of,
    template_to_wire,
)

log = logging.getLogger("wasmlet.agent")

POLL_SECONDS = 0.05  # how soon a revision that became ready is sent to the processes
RESTART_BASE_SECONDS, RESTART_CAP_SECONDS = 0.5, 30.0
STABLE_SECONDS = 60.0  # a process that ran this long restarts without back-off
MAX_APPS = 4096  # HTTP apps one agent serves through its processes (rows of shared counts)


class _Revision(Protocol):
    revision: str

    @property
    def digest(self) -> str | None: ...
    @property
    def spec(self) -> Any: ...
    def serving(self) -> tuple[Any, InstanceSpec] | None: ...
    def refusal(self) -> tuple[int, str] | None: ...


class _Revisions(Protocol):
    def http_revision(self, key: AppKey) -> _Revision | None: ...


@dataclass
class _App:
    slot: int
    port: int
    sock: socket.socket
    max_concurrency: int
    state: ServingState | None = None
    stderr: Sink | None = None


@dataclass
class _Process:
    index: int
    popen: subprocess.Popen[bytes]
    control: socket.socket
    pidfd: int
    started: float
    # What each app was last sent as: (port, revision, refusal).
    sent: dict[AppKey, tuple[int, str | None, tuple[int, str] | None]] = field(default_factory=dict)
    acked: dict[AppKey, str | None] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)  # digests whose artifact it was sent
    dropped: dict[AppKey, asyncio.Future[None]] = field(default_factory=dict)
    exited: asyncio.Future[int] | None = None


class ServingProcesses:
    def __init__(
        self,
        count: int,
        revisions: _Revisions,
        artifact: Callable[[str], bytes],
        fingerprint: str,
        limits: FrontLimits,
        metrics: AgentMetrics,
        registry: CollectorRegistry,
        event: EventSink,
        on_change: Callable[[], None],
        metrics_root: Path,
    ) -> None:
        self.count = count
        self.revisions, self.artifact, self.fingerprint = revisions, artifact, fingerprint
        self.limits, self.metrics, self.event, self.on_change = limits, metrics, event, on_change
        self.apps: dict[AppKey, _App] = {}
        self.processes: dict[int, _Process] = {}
        self._artifacts: dict[str, int] = {}  # digest -> sealed memfd of verified bytes
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._wake = asyncio.Event()
        self.counts = SharedCounts.create(count, MAX_APPS + 1)
        self._free_slots = list(range(MAX_APPS, NODE_SLOT, -1))  # popped lowest first
        # The processes' counters and histograms, merged into the agent's /metrics.
        self.metrics_dir = _fresh_metrics_dir(metrics_root)
        MultiProcessCollector(registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]

    # -- what HttpFronts calls -------------------------------------------------------------

    def add(self, key: AppKey, port: int, sock: socket.socket, max_concurrency: int) -> None:
        if not self._free_slots:
            raise OSError(f"this agent serves at most {MAX_APPS} HTTP apps")
        slot = self._free_slots.pop()
        self.counts.clear(slot)
        self.apps[key] = _App(slot, port, sock, max_concurrency)
        if not self._tasks:  # started with the first HTTP app: command-only nodes pay nothing
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._supervise(i)) for i in range(self.count)]
            self._tasks.append(loop.create_task(self._follow_revisions()))
        self._wake.set()

    async def drop(self, key: AppKey, grace: float) -> None:
        """Every process stops serving `key` (its requests in flight finish first)."""
        app = self.apps.pop(key, None)
        loop = asyncio.get_running_loop()
        waits = []
        for proc in list(self.processes.values()):
            proc.sent.pop(key, None)
            proc.acked.pop(key, None)
            fut: asyncio.Future[None] = loop.create_future()
            proc.dropped[key] = fut
            if self._send(proc, {"op": "drop", "key": list(key), "grace": grace}):
                waits.append(fut)
        if waits:
            await asyncio.wait(waits, timeout=grace + 5)
        self._close_unused_artifacts()
        if app is not None:
            self._free_slots.append(app.slot)
            self._free_slots.sort(reverse=True)

    def slot(self, key: AppKey) -> int:
        return self.apps[key].slot

    def synced(self, key: AppKey) -> bool:
        """Some live process serves a revision of `key`, and none answers it with 503.

        A process accepts an app's connections only once it loaded a revision of it, unless
        it was told of the app before the app was ready (it acked None): so a process still
        loading, or restarting, takes no requests and does not make the app unready."""
        acked = [p.acked[key] for p in list(self.processes.values()) if key in p.acked]
        return bool(acked) and all(revision is not None for revision in acked)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for fd in self._artifacts.values():
            os.close(fd)
        self._artifacts.clear()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.counts.close()
        os.close(self.counts.fd)

    def pids(self) -> dict[int, int]:
        """index -> pid of the live serving processes."""
        return {i: p.popen.pid for i, p in self.processes.items()}

    # -- supervision -----------------------------------------------------------------------

    async def _supervise(self, index: int) -> None:
        restarts = 0
        try:
            while not self._stopping:
                proc = self._spawn(index)
                self.processes[index] = proc
                self._wake.set()
                assert proc.exited is not None
                code = await proc.exited
                self._forget(proc)
                self.counts.clear_process(index)  # what it held is the node's again
                ran = time.monotonic() - proc.started
                if ran >= STABLE_SECONDS:
                    restarts = 0
                delay = next_delay(restarts, RESTART_BASE_SECONDS, RESTART_CAP_SECONDS)
                restarts += 1
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                msg = (f"HTTP serving process {index} (pid {proc.popen.pid}) ended with {how} "
                       f"after {ran:.1f}s; requests it held failed, the other processes serve "
                       f"on; starting it again in {delay:.1f}s")  # fmt: skip
                log.warning("%s", msg)
                self.metrics.serving_restarts.inc()
                for key in list(self.apps):
                    self.event(key, "Warning", Reason.SERVING_PROCESS_RESTARTED, msg)
                self.on_change()
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            live = self.processes.pop(index, None)
            if live is not None:
                await self._end(live)
            raise

    def _spawn(self, index: int) -> _Process:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        limits = json.dumps(dataclasses.asdict(self.limits))
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", "wasmlet_agent.serving_worker",
                 "--control-fd", str(theirs.fileno()), "--index", str(index),
                 "--processes", str(self.count), "--limits", limits,
                 "--counts-fd", str(self.counts.fd), "--slots", str(self.counts.slots),
                 "--cpu", str(self._cpu(index))],
                pass_fds=(theirs.fileno(), self.counts.fd), env=env, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            theirs.close()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(popen.pid)
        proc = _Process(index, popen, ours, pidfd, time.monotonic())
        proc.exited = loop.create_future()

        def exited() -> None:
            loop.remove_reader(pidfd)
            assert proc.exited is not None
            if not proc.exited.done():
                proc.exited.set_result(popen.wait())

        loop.add_reader(pidfd, exited)
        loop.add_reader(ours.fileno(), self._receive, proc)
        log.info("HTTP serving process %d started (pid %d)", index, popen.pid)
        return proc

    def _cpu(self, index: int) -> int:
        """The CPU process `index` keeps to: within one process the GIL changes hands
        between its threads, which costs far more when they run on different cores."""
        cpus = sorted(os.sched_getaffinity(0))
        return cpus[index % len(cpus)]

    def _forget(self, proc: _Process) -> None:
        if self.processes.get(proc.index) is proc:
            del self.processes[proc.index]
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(proc.control.fileno())
        proc.control.close()
        os.close(proc.pidfd)
        for fut in proc.dropped.values():
            if not fut.done():
                fut.set_result(None)

    async def _end(self, proc: _Process) -> None:
        """Stop one process: closing its control socket tells it to finish and exit."""
        assert proc.exited is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(proc.control.fileno())
        proc.control.close()
        try:
            await asyncio.wait_for(asyncio.shield(proc.exited), 10)
        except TimeoutError:
            log.warning("HTTP serving process %d (pid %d) did not exit: killed",
                        proc.index, proc.popen.pid)  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.popen.pid, signal.SIGKILL)
            await proc.exited
        with contextlib.suppress(OSError):
            os.close(proc.pidfd)

    # -- the control channel ---------------------------------------------------------------

    def _send(self, proc: _Process, message: dict[str, Any], fds: tuple[int, ...] = ()) -> bool:
        try:
            socket.send_fds(proc.control, [encode(message)], fds)
            return True
        except BlockingIOError:
            # It does not read its control socket: a stuck process, restarted in full.
            log.warning("HTTP serving process %d is not reading its control socket: killed",
                        proc.index)  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.popen.pid, signal.SIGKILL)
        except OSError:
            pass  # it is ending; the supervisor notices
        return False

    def _receive(self, proc: _Process) -> None:
        """Messages from a process: acks and its guests' stderr. Only data for the agent:
        a malformed one is dropped (a serving process runs guests, so it is not trusted
        further than its logs and acknowledgements)."""
        for _ in range(64):
            try:
                data = proc.control.recv(MAX_MESSAGE_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(ValueError, OSError):
                    asyncio.get_running_loop().remove_reader(proc.control.fileno())
                return
            try:
                self._on_message(proc, decode(data))
            except (ValueError, KeyError, TypeError):
                log.warning("HTTP serving process %d sent a malformed message", proc.index)

    def _on_message(self, proc: _Process, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "ack":
            key = key_of(message)
            if key in self.apps:
                revision = message.get("revision")
                proc.acked[key] = str(revision) if revision is not None else None
                if message.get("error"):
                    log.warning("HTTP serving process %d cannot serve %s/%s: %s",
                                proc.index, *key, message["error"])  # fmt: skip
                self.on_change()
        elif op == "stderr":
            app = self.apps.get(key_of(message))
            state = app.state if app is not None else None
            # Only the current revision's: an old template's sink may be gone.
            if app is not None and app.stderr is not None and state is not None \
                    and message.get("revision") == state.revision:  # fmt: skip
                app.stderr(base64.b64decode(str(message["data"])))
        elif op == "dropped":
            fut = proc.dropped.pop(key_of(message), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif op == "hello":
            log.debug("HTTP serving process %d ready (pid %s)", proc.index, message.get("pid"))

    # -- keeping the processes in line -----------------------------------------------------

    async def _follow_revisions(self) -> None:
        while True:
            try:
                await self._push()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sending HTTP apps to the serving processes failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()

    async def _push(self) -> None:
        for key, app in list(self.apps.items()):
            rev = self.revisions.http_revision(key)
            served = rev.serving() if rev is not None else None
            refusal = rev.refusal() if rev is not None and served is None else None
            if rev is None or served is None or rev.digest is None:
                state, sink = None, None
            elif app.state is not None and app.state.revision == rev.revision:
                state, sink = app.state, app.stderr
            else:
                _, template = served
                limits = rev.spec.limits
                state = ServingState(
                    rev.revision, rev.digest, self.fingerprint, template_to_wire(template),
                    limits.max_concurrency, float(limits.request_timeout_seconds),
                )  # fmt: skip
                sink = template.stderr
            app.state, app.stderr = state, sink
            for proc in list(self.processes.values()):
                want = (app.port, state.revision if state else None, refusal)
                if proc.sent.get(key) == want:
                    continue
                fds = [app.sock.fileno()]
                needs_artifact = state is not None and state.digest not in proc.modules
                if state is not None and needs_artifact:
                    fds.append(await self._artifact_fd(state.digest))
                if key not in self.apps:  # dropped while the artifact was read
                    break
                message = app_message(key, app.slot, app.port, app.max_concurrency, state,
                                      needs_artifact, refusal)  # fmt: skip
                if self._send(proc, message, tuple(fds)):
                    proc.sent[key] = want
                    if state is not None:
                        proc.modules.add(state.digest)
                    else:
                        proc.acked[key] = None  # it opens the app without a revision: 503s
        self._close_unused_artifacts()

    async def _artifact_fd(self, digest: str) -> int:
        fd = self._artifacts.get(digest)
        if fd is None:
            # Read and MAC-checked by the cache (recompiled if it fails): only bytes the agent
            # itself wrote reach a serving process, which deserializes them unchecked.
            data = await asyncio.to_thread(self.artifact, digest)
            fd = _sealed_memfd(f"wasmlet-artifact-{digest[7:19]}", data)
            self._artifacts[digest] = fd
        return fd

    def _close_unused_artifacts(self) -> None:
        in_use = {a.state.digest for a in self.apps.values() if a.state is not None}
        for digest in [d for d in self._artifacts if d not in in_use]:
            os.close(self._artifacts.pop(digest))
            for proc in self.processes.values():
                proc.modules.discard(digest)


def _sealed_memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        # Nobody, the agent included, can change it after this.
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)  # fmt: skip
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fresh_metrics_dir(root: Path) -> Path:
    """A metrics directory of this agent's own; those of agents no longer running go."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in root.iterdir():
        pid = old.name.split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = root / f"{os.getpid()}-{os.urandom(4).hex()}"
    path.mkdir(mode=0o700)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
