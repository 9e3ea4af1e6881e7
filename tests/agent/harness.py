"""A real Agent on its own event-loop thread, driven from a test's (blocking) thread.

Tests talk to the agent the way everything else does: over HTTP on loopback for served apps
and the agent API, and through `reports()` (run on the agent's loop) for status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from wasmlet.api.constants import API_VERSION
from wasmlet.api.placements import AppReport
from wasmlet_agent.agent import Agent
from wasmlet_agent.apps import DesiredApp
from wasmlet_agent.config import AgentConfig
from wasmlet_agent.objects import ManifestObjects
from wasmlet_agent.revision import AppKey
from wasmlet_agent.standalone import desired_from_documents
from wasmlet_dev.ports import free_port as free_port  # re-exported for the agent tests
from wasmlet_dev.waits import wait_until as wait_until

T = TypeVar("T")

NS = "default"


@dataclass(frozen=True)
class Event:
    key: AppKey
    type: str
    reason: str
    message: str


class Objects:
    """A mutable ObjectLookup (an API server's ConfigMaps and Secrets, as they change)."""

    def __init__(self, docs: Iterable[Mapping[str, Any]] = ()) -> None:
        self._docs: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        for doc in docs:
            self.put(doc)

    def put(self, doc: Mapping[str, Any]) -> None:
        meta = doc.get("metadata") or {}
        self._docs[(str(doc["kind"]), meta.get("namespace") or NS, str(meta["name"]))] = doc

    def config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._docs.get(("ConfigMap", namespace, name))

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._docs.get(("Secret", namespace, name))


def app_doc(name: str, module: Mapping[str, Any], **spec: Any) -> dict[str, Any]:
    """A WasmApp manifest; spec fields are given by their API (camelCase) names."""
    return {
        "apiVersion": API_VERSION,
        "kind": "WasmApp",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"module": dict(module), **spec},
    }


def wasm_app(name: str, module: Mapping[str, Any], **spec: Any) -> DesiredApp:
    """A desired app, parsed exactly as standalone mode parses manifest files."""
    (app,), _ = desired_from_documents([app_doc(name, module, **spec)])
    return app


def configmap_doc(name: str, files: Mapping[str, bytes | str]) -> dict[str, Any]:
    data = {k: v for k, v in files.items() if isinstance(v, str)}
    binary = {k: base64.b64encode(v).decode() for k, v in files.items() if isinstance(v, bytes)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": data,
        "binaryData": binary,
    }


def configmap_module(name: str, key: str = "module.wasm") -> dict[str, Any]:
    return {"configMap": {"name": name, "key": key}}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(
    port: int,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP request to 127.0.0.1:port on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class RunningAgent:
    """A started Agent. `stop()` shuts it down and checks nothing was left running."""

    config: AgentConfig
    lookup: Any
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._events_lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-agent-loop")
        self.thread.start()
        self.agent = Agent(self.config, self.lookup, event=self._event)
        self.call(self.agent.start())
        self.stopped = False

    def _event(self, key: AppKey, type_: str, reason: str, message: str) -> None:
        with self._events_lock:
            self.events.append(Event(key, type_, reason, message))

    # --- driving the agent ---------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_loop(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self.call(run())

    def apply(self, *apps: DesiredApp) -> None:
        """Apply, then wait until the app controllers have acted on it (they work from a
        queue): a check right after sees the instances the change asked for."""
        self.call(self.agent.apply(apps))
        assert self.agent.apps.settle(30), "the app controllers did not settle in 30 s"

    def reports(self) -> dict[AppKey, AppReport]:
        return self.on_loop(self.agent.reports)

    def report(self, name: str) -> AppReport | None:
        return self.reports().get((NS, name))

    def wait_report(
        self, name: str, check: Callable[[AppReport], bool], what: str, timeout: float = 20.0
    ) -> AppReport:
        def poll() -> AppReport | None:
            rep = self.report(name)
            try:
                return rep if rep is not None and check(rep) else None
            except IndexError:  # a check of instances[0] before the first instance exists
                return None

        try:
            return wait_until(poll, f"{name}: {what}", timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\nreport: {self.report(name)!r}") from None

    def events_of(self, name: str) -> list[Event]:
        with self._events_lock:
            return [e for e in self.events if e.key == (NS, name)]

    def metric(self, name: str, **labels: str) -> float | None:
        value: float | None = self.agent.registry.get_sample_value(name, labels)
        return value

    def api(self, path: str, timeout: float = 30.0) -> Response:
        return request(self.agent.api_port, path, timeout=timeout)

    def stop(self, grace: float = 10.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            self.call(self.agent.shutdown(grace), timeout=grace + 30)
            self.call(self.loop.shutdown_default_executor())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def instance_threads() -> list[threading.Thread]:
    """Threads the agent runs for instances and module preloads that are still alive."""
    return [
        t
        for t in threading.enumerate()
        if t.is_alive() and t.name.startswith(("instance-", "preload-"))
    ]


def start_agent(cache_dir: Path, lookup: Any = None, **config: Any) -> RunningAgent:
    # WASMLET_TEST_HTTP_PROCESSES=2 runs every agent test's HTTP apps in serving processes.
    config.setdefault("http_processes", int(os.environ.get("WASMLET_TEST_HTTP_PROCESSES", "0")))
    cfg = AgentConfig(node="test-node", cache_dir=cache_dir, report_interval=0.02, **config)
    return RunningAgent(cfg, lookup if lookup is not None else ManifestObjects([]))


class TcpForwarder:
    """Forwards connections from 127.0.0.1:port to 127.0.0.1:target (a service coming up)."""

    def __init__(self, port: int, target: int) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", port))
        self.server.settimeout(0.1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, name="test-forwarder")
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), name="test-forwarder")
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self._accept.join(5)
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for t in self._threads:
            t.join(5)
