"""An HTTP serving process: serves the agent's HTTP apps on sockets the agent passes down.

Started and supervised by the agent (`serving_processes.py`), one per core, so instances
run beside an event loop and a GIL of their own. It has its own wasmtime Engine and loads
each module from the artifact the agent verified (its MAC) and passed as a sealed memfd, so
it neither compiles nor reads the cache. It gets each app's per-request template over the
control socket and uses the same HttpFront as the agent's in-process serving. Its counters
and histograms go to PROMETHEUS_MULTIPROC_DIR (set by the agent), which the agent merges
into its one /metrics. It exits when the agent closes the control socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from wasmlet import logfmt
from wasmlet_agent.config import FrontLimits
from wasmlet_agent.http_front import BodyBudget, HttpFront
from wasmlet_agent.metrics import ServingMetrics
from wasmlet_agent.revision import AppKey
from wasmlet_agent.runtime.cgi import CgiRequest, CgiResponse, invoke_cgi
from wasmlet_agent.runtime.engine import WasmEngine
from wasmlet_agent.runtime.instances import InstanceSpec
from wasmlet_agent.runtime.modules import LoadedModule, ModuleError
from wasmlet_agent.runtime.usage import InFlight, OnCpu, Usage
from wasmlet_agent.serving_counters import NODE_SLOT, Field, Peers, SharedCounts
from wasmlet_agent.serving_messages import (
    MAX_MESSAGE_BYTES,
    STDERR_CHUNK_BYTES,
    ServingState,
    decode,
    encode,
    key_of,
    state_from_message,
    stderr_messages,
    template_from_wire,
)

log = logging.getLogger("wasmlet.agent")

CONNECTIONS_TICK = 0.05


@dataclass(frozen=True)
class _Limits:
    max_concurrency: int
    request_timeout_seconds: float


@dataclass(frozen=True)
class _Spec:
    limits: _Limits


@dataclass(frozen=True)
class _Revision:
    """An app's serving revision in this process (what HttpFront asks for)."""

    spec: _Spec
    module: LoadedModule
    template: InstanceSpec
    inflight: InFlight  # the app's requests running in this process, for their memory
    on_cpu: OnCpu | None

    def serving(self) -> tuple[LoadedModule, InstanceSpec]:
        return self.module, self.template

    def refusal(self) -> None:
        return None

    def invoke(
        self, module: LoadedModule, request: CgiRequest, template: InstanceSpec
    ) -> CgiResponse:
        usage = Usage(self.on_cpu)
        with self.inflight.track(usage):
            return invoke_cgi(module, request, template, usage=usage)


@dataclass(frozen=True)
class _Refusing:
    """An app whose revision refuses requests in the agent (e.g. its emptyDir is full): the
    process answers as the agent would, with the agent's status and reason."""

    status: int
    text: str
    spec: _Spec = _Spec(_Limits(1, 1.0))

    def serving(self) -> None:
        return None

    def refusal(self) -> tuple[int, str]:
        return self.status, self.text

    def invoke(
        self, module: LoadedModule, request: CgiRequest, template: InstanceSpec
    ) -> CgiResponse:
        raise RuntimeError("a refusing revision serves nothing")


class _Revisions:
    def __init__(self) -> None:
        self.by_key: dict[AppKey, _Revision | _Refusing] = {}

    def http_revision(self, key: AppKey) -> _Revision | _Refusing | None:
        return self.by_key.get(key)


class _Front(HttpFront):
    """HttpFront that also counts this process's requests (bounded: one series per index)."""

    served: Any = None  # this process's child of wasmlet_http_serving_process_requests

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await super().handle(request)
        finally:
            if self.served is not None:
                self.served.inc()


class _SharedBudget(BodyBudget):
    """The node's request-body budget, counted over every serving process."""

    def __init__(self, max_bytes: int, peers: Peers) -> None:
        super().__init__(max_bytes)
        self.peers = peers

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + self.peers.others(Field.BUDGET) + n > self.max_bytes:
                return False
            self.used += n
            self.peers.publish(Field.BUDGET, self.used)
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n
            self.peers.publish(Field.BUDGET, self.used)


class ServingWorker:
    def __init__(
        self, control: socket.socket, index: int, counts: SharedCounts, limits: FrontLimits
    ) -> None:
        self.control, self.index, self.counts, self.limits = control, index, counts, limits
        counts.clear_process(index)  # nothing of a predecessor's is held any more
        self.budget = _SharedBudget(limits.body_budget_bytes, Peers(counts, NODE_SLOT, index))
        self.engine = WasmEngine()
        self.metrics = ServingMetrics(CollectorRegistry())
        self.revisions = _Revisions()
        self.inflight: dict[AppKey, InFlight] = {}
        self.fronts: dict[AppKey, _Front] = {}
        self.modules: dict[str, LoadedModule] = {}
        self._send_lock = threading.Lock()
        self._stderr: dict[AppKey, tuple[str, bytearray]] = {}  # guest stderr not yet sent
        self._stderr_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        """To the agent, from any thread; a gone agent is noticed by the reader."""
        with self._send_lock, contextlib.suppress(OSError):
            self.control.send(encode(message))

    def _stderr_sink(self, key: AppKey, revision: str) -> Any:
        """Guest stderr, sent to the agent in batches: each tick, or as soon as a message's
        worth is buffered. A message per request cost the agent a receive and a decode per
        request; a batch keeps the order and is at most one tick late. One buffer per app:
        a new revision's sink sends what the old one buffered first."""
        pending = bytearray()
        with self._stderr_lock:
            if key in self._stderr:
                self._send_stderr(key, *self._stderr[key])
            self._stderr[key] = (revision, pending)

        def sink(data: bytes) -> None:
            with self._stderr_lock:
                pending.extend(data)
                if len(pending) >= STDERR_CHUNK_BYTES:
                    # Sent under the lock: a tick's flush cannot overtake this batch.
                    self._send_stderr(key, revision, pending)

        return sink

    def _send_stderr(self, key: AppKey, revision: str, pending: bytearray) -> None:
        """Send and empty one buffer of `key`'s stderr (with _stderr_lock held)."""
        if pending:
            data = bytes(pending)
            pending.clear()
            for message in stderr_messages(key, revision, data):
                self.send(message)

    def _flush_stderr(self, forget: AppKey | None = None) -> None:
        with self._stderr_lock:
            for key, (revision, pending) in self._stderr.items():
                self._send_stderr(key, revision, pending)
            if forget is not None:
                self._stderr.pop(forget, None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[dict[str, Any], list[int]] | None] = asyncio.Queue()

        def read() -> None:  # a blocking reader: the control socket carries fds
            while True:
                try:
                    data, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE_BYTES, 4)
                except OSError:
                    data, fds = b"", []
                if not data:
                    loop.call_soon_threadsafe(inbox.put_nowait, None)
                    return
                try:
                    message = decode(data)
                except ValueError:
                    log.warning("serving process %d: unreadable control message", self.index)
                    for fd in fds:
                        os.close(fd)
                    continue
                loop.call_soon_threadsafe(inbox.put_nowait, (message, fds))

        threading.Thread(target=read, name="control", daemon=True).start()
        publisher = loop.create_task(self._publish_connections())
        self.send({"op": "hello", "pid": os.getpid(), "fingerprint": self.engine.fingerprint})
        try:
            while (item := await inbox.get()) is not None:
                message, fds = item
                try:
                    await self._handle(message, fds)
                except Exception:
                    log.exception("serving process %d: %s failed", self.index, message.get("op"))
                finally:
                    for fd in fds:
                        os.close(fd)
        finally:  # the agent is gone or stopping: in-flight requests get a short grace
            publisher.cancel()
            await asyncio.gather(*(front.stop(5.0) for front in self.fronts.values()))
            self._flush_stderr()
            self.engine.stop()

    async def _publish_connections(self) -> None:
        """Connections end without telling the front: their count is published every tick
        (and at each accept), so other processes see a closed one within CONNECTIONS_TICK.
        Buffered guest stderr goes to the agent on the same tick."""
        while True:
            self._flush_stderr()
            for key, front in list(self.fronts.items()):
                if front.peers is not None:
                    front.peers.publish(Field.CONNECTIONS, front.connections())
                    inflight = self.inflight.get(key)
                    memory = inflight.memory_bytes() if inflight is not None else 0
                    front.peers.publish(Field.MEMORY, memory)
            await asyncio.sleep(CONNECTIONS_TICK)

    async def _handle(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message["op"]
        if op == "app":
            await self._app(message, fds)
        elif op == "drop":
            key = key_of(message)
            front = self.fronts.pop(key, None)
            if front is not None:
                await front.stop(float(message.get("grace", 30.0)))
            self.revisions.by_key.pop(key, None)
            self.inflight.pop(key, None)
            self._flush_stderr(forget=key)  # its last lines before "dropped"
            self._forget_modules()
            self.send({"op": "dropped", "key": list(key)})

    async def _app(self, message: dict[str, Any], fds: list[int]) -> None:
        key, port = key_of(message), int(message["port"])
        state = state_from_message(message["serving"])
        error = ""
        refusal = message.get("refusal")
        if state is None and refusal is not None:
            self.revisions.by_key[key] = _Refusing(int(refusal[0]), str(refusal[1]))
        elif state is None:
            self.revisions.by_key.pop(key, None)
        else:
            artifact = fds[1] if len(fds) > 1 else None
            try:
                self.revisions.by_key[key] = await self._revision(key, state, artifact)
            except (ModuleError, ValueError) as e:
                error = str(e)
                log.warning("serving process %d: %s/%s cannot serve: %s", self.index, *key, e)
        front = self.fronts.get(key)
        if front is not None and front.port != port:
            await self.fronts.pop(key).stop()
            front = None
        if front is None:
            peers = Peers(self.counts, int(message["slot"]), self.index)
            front = _Front(self.revisions, key, "", port, self.metrics, self.limits, self.budget,
                           int(message["max_concurrency"]), peers)  # fmt: skip
            front.served = self.metrics.process_requests.labels(process=str(self.index))
            # The agent's socket, dup'd into this process by SCM_RIGHTS: ours to close.
            await front.start(socket.socket(fileno=os.dup(fds[0])))
            self.fronts[key] = front
        self._forget_modules()
        served = self.revisions.by_key.get(key)
        self.send({"op": "ack", "key": list(key),
                   "revision": state.revision if state and served else None,
                   "error": error})  # fmt: skip

    async def _revision(self, key: AppKey, state: ServingState, artifact: int | None) -> _Revision:
        if state.fingerprint != self.engine.fingerprint:
            raise ValueError(
                f"the artifact is for engine {state.fingerprint}, this process runs "
                f"{self.engine.fingerprint}"
            )
        module = self.modules.get(state.digest)
        if module is None:
            if artifact is None:
                raise ValueError(f"no artifact for {state.digest} was passed")
            path = f"/proc/self/fd/{artifact}"
            module = await asyncio.to_thread(LoadedModule.from_serialized_file, self.engine, path)
            self.modules[state.digest] = module
        template, wants_stderr = template_from_wire(state.template)
        if wants_stderr:
            template = dataclasses.replace(template, stderr=self._stderr_sink(key, state.revision))
        limits = _Limits(state.max_concurrency, state.request_timeout_seconds)
        on_cpu = self.metrics.cpu.labels(namespace=key[0], app=key[1]).inc
        inflight = self.inflight.setdefault(key, InFlight())
        return _Revision(_Spec(limits), module, template, inflight, on_cpu)

    def _forget_modules(self) -> None:
        in_use = {id(r.module) for r in self.revisions.by_key.values() if isinstance(r, _Revision)}
        for digest in [d for d, m in self.modules.items() if id(m) not in in_use]:
            del self.modules[digest]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wasmlet-serving", description=__doc__)
    p.add_argument("--control-fd", type=int, required=True)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--processes", type=int, required=True)
    p.add_argument("--counts-fd", type=int, required=True)
    p.add_argument("--slots", type=int, required=True)
    p.add_argument("--limits", required=True, help="FrontLimits as JSON")
    p.add_argument("--cpu", type=int, default=None, help="keep to this CPU")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    logfmt.setup(args.log_format, False)
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        print("wasmlet-serving: PROMETHEUS_MULTIPROC_DIR must be set", file=sys.stderr)
        return 2
    control = socket.socket(fileno=args.control_fd)
    limits = FrontLimits(**json.loads(args.limits))
    counts = SharedCounts(args.counts_fd, args.processes, args.slots)
    worker = ServingWorker(control, args.index, counts, limits)
    asyncio.run(worker.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
