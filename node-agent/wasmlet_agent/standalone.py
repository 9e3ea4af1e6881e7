"""Standalone mode: run WasmApp manifests from files on this machine, no cluster at all.

Like the kubelet's static pods: the files are the desired state. ConfigMaps and Secrets in
the same files feed env, volumes and configMap module sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from wasmlet.api.manifests import load_documents, parse_app
from wasmlet.api.revisions import revision_of
from wasmlet.api.spec import SpecError
from wasmlet_agent.agent import Agent
from wasmlet_agent.apps import DesiredApp
from wasmlet_agent.config import AgentConfig
from wasmlet_agent.objects import ManifestObjects
from wasmlet_agent.revision import AppKey, Revision


def load_desired(paths: Sequence[Path]) -> tuple[list[DesiredApp], ManifestObjects]:
    """Desired apps and their objects from manifest files; SpecError names file and field."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        docs.extend(load_documents(path))
    return desired_from_documents(docs)


def desired_from_documents(
    docs: Sequence[Mapping[str, Any]],
) -> tuple[list[DesiredApp], ManifestObjects]:
    """Desired apps and the ConfigMaps and Secrets beside them, from parsed manifests."""
    apps: list[DesiredApp] = []
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        if doc.get("kind") != "WasmApp":
            continue
        try:
            app = parse_app(doc)
        except SpecError as e:
            name = (doc.get("metadata") or {}).get("name", "?")
            raise SpecError(f"WasmApp {name}: {e.path}", e.problem) from None
        key = (app.namespace, app.name)
        if key in seen:
            raise SpecError(
                f"WasmApp {app.namespace}/{app.name}", "is defined twice; give each a unique name"
            )
        seen.add(key)
        apps.append(DesiredApp(key, revision_of(doc["spec"]), app.spec, app.spec.replicas))
    if not apps:
        raise SpecError("files", "no WasmApp found; pass a file with kind: WasmApp")
    return apps, ManifestObjects(docs)


class _LogPrinter:
    """Prints new instance log lines as `[app/instance] line`, like `kubectl logs -f`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._seen: dict[tuple[AppKey, str], int] = {}

    def print_new(self, revisions: Iterable[tuple[AppKey, Revision]]) -> None:
        for key, rev in revisions:
            for name, buf in list(rev.logs.items()):
                for line in buf.tail():
                    if line.seq > self._seen.get((key, name), 0):
                        self._seen[(key, name)] = line.seq
                        self.out.write(f"[{key[1]}/{name}] {line.text}\n")
        self.out.flush()


def _revisions(agent: Agent) -> list[tuple[AppKey, Revision]]:
    return [(key, rev) for key in agent.apps.app_keys() for rev in agent.apps.revisions(key)]


async def _stream_logs(agent: Agent, printer: _LogPrinter) -> None:
    while True:
        printer.print_new(_revisions(agent))
        await asyncio.sleep(0.1)


async def run(paths: Sequence[Path], config: AgentConfig, out: TextIO = sys.stdout) -> int:
    try:
        desired, objects = load_desired(paths)
    except (SpecError, OSError) as e:
        print(f"wasmlet: {e}", file=sys.stderr)
        return 2
    agent = Agent(config, objects, event=lambda key, t, reason, msg: print(
        f"event {key[1]}: {t} {reason}: {msg}", file=sys.stderr))  # fmt: skip
    try:
        await agent.start()
    except OSError as e:
        print(f"wasmlet: cannot serve the agent API on {config.api_address}:{config.api_port}: "
              f"{e}; pass another --api-port", file=sys.stderr)  # fmt: skip
        await agent.shutdown()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await agent.apply(desired)
    agent.ready = True
    print(f"wasmlet: node agent {config.node}: metrics and health on "
          f"http://{config.api_address}:{agent.api_port}/metrics", file=sys.stderr)  # fmt: skip
    for d in desired:
        if d.spec.http is not None:
            print(f"wasmlet: {d.key[1]} serves http://{config.address}:{d.spec.http.port}/",
                  file=sys.stderr)  # fmt: skip
    printer = _LogPrinter(out)
    streamer = asyncio.create_task(_stream_logs(agent, printer))
    await stop.wait()
    print("wasmlet: stopping (in-flight requests finish, instances stop)", file=sys.stderr)
    streamer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await streamer
    revisions = _revisions(agent)
    await agent.shutdown()
    printer.print_new(revisions)  # what the instances wrote up to the end
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    return 0
