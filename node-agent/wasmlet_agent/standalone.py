"""Standalone mode: run WasmApp manifests from files on this machine, no cluster at all.

Like the kubelet's static pods: the files are the desired state. ConfigMaps and Secrets in
the same files feed env, volumes and configMap module sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from wasmlet.api.manifests import load_documents, parse_app
from wasmlet.api.revisions import revision_of
from wasmlet.api.spec import SpecError
from wasmlet_agent.agent import DesiredApp
from wasmlet_agent.objects import ManifestObjects
from wasmlet_agent.runner import NodeRunner, RunnerConfig


def load_desired(paths: Sequence[Path]) -> tuple[list[DesiredApp], ManifestObjects]:
    """Desired apps and their objects from manifest files; SpecError names file and field."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        docs.extend(load_documents(path))
    apps = []
    for doc in docs:
        if doc.get("kind") != "WasmApp":
            continue
        try:
            app = parse_app(doc)
        except SpecError as e:
            name = (doc.get("metadata") or {}).get("name", "?")
            raise SpecError(f"WasmApp {name}: {e.path}", e.problem) from None
        apps.append(
            DesiredApp((app.namespace, app.name), revision_of(doc["spec"]), app.spec,
                       app.spec.replicas)
        )  # fmt: skip
    if not apps:
        raise SpecError("files", "no WasmApp found; pass a file with kind: WasmApp")
    return apps, ManifestObjects(docs)


async def _stream_logs(runner: NodeRunner, out: TextIO) -> None:
    """Print new instance log lines as `[app/instance] line`, like `kubectl logs -f`."""
    seen: dict[str, int] = {}
    while True:
        for key in runner.agent.app_keys():
            for rev in runner.agent.revisions(key):
                for name, buf in list(rev.logs.items()):
                    for line in buf.tail():
                        if line.seq > seen.get(name, 0):
                            seen[name] = line.seq
                            out.write(f"[{key[1]}/{name}] {line.text}\n")
        out.flush()
        await asyncio.sleep(0.1)


async def run(paths: Sequence[Path], config: RunnerConfig, out: TextIO = sys.stdout) -> int:
    try:
        desired, objects = load_desired(paths)
    except (SpecError, OSError) as e:
        print(f"wasmlet: {e}", file=sys.stderr)
        return 2
    runner = NodeRunner(config, objects, event=lambda key, t, reason, msg: print(
        f"event {key[1]}: {t} {reason}: {msg}", file=sys.stderr))  # fmt: skip
    await runner.start()
    await runner.apply(desired)
    runner.ready = True
    print(f"wasmlet: node agent {config.node}: metrics and health on "
          f"http://{config.api_address}:{runner.api_port}/metrics", file=sys.stderr)  # fmt: skip
    for d in desired:
        if d.spec.http is not None:
            print(f"wasmlet: {d.key[1]} serves http://{config.address}:{d.spec.http.port}/",
                  file=sys.stderr)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    streamer = asyncio.create_task(_stream_logs(runner, out))
    await stop.wait()
    print("wasmlet: stopping (in-flight requests finish, instances stop)", file=sys.stderr)
    await runner.shutdown()
    streamer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await streamer
    return 0
