"""The real node, started once per session for tests/node: the control plane, containerd,
kubelet and kube-scheduler in a netns of their own, with the wasmlet image imported."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agent.sources.helpers import with_custom_section
from tests.fixtures.tools import missing_tool, require_tool
from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_dev.images import image_tarball
from wasmlet_dev.realnode.node import RealNode
from wasmlet_dev.wasm_build import build_c

INSTALL = "apt-get install containerd runc containernetworking-plugins (hack/install-deps.sh does)"
# The agent's host directories: removed after the session if the session made them.
HOST_DIRS = (Path("/var/lib/wasmlet"), Path("/srv/wasmlet"), Path("/var/log/wasmlet"))


@pytest.fixture(scope="session")
def real_node() -> Iterator[RealNode]:
    if os.geteuid() != 0:
        missing_tool("the real node needs root (network namespaces, mounts, containerd)")
    for tool in ("containerd", "ctr", "runc", "nsenter", "iptables", "/usr/lib/cni/bridge"):
        require_tool(tool, INSTALL)
    made = [d for d in HOST_DIRS if not d.exists()]
    node = RealNode(repo_root() / ".cache" / "node-tier", images=[image_tarball()])
    with node:
        yield node
    for directory in made:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class HttpModule:
    """examples/modules/hello-http.c built and served over HTTP at `url`; `v2_url` serves
    the same code with a custom section added (another digest: a module to roll out to)."""

    url: str
    digest: str
    v2_url: str
    v2_digest: str
    root: Path  # served at `base`: a module written here is at f"{base}/{name}"
    base: str

    def serve(self, name: str, wasm: bytes) -> tuple[str, str]:
        """`wasm` served as `name`: its URL and digest."""
        (self.root / name).write_bytes(wasm)
        return f"{self.base}/{name}", "sha256:" + hashlib.sha256(wasm).hexdigest()


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def hello_module(
    real_node: RealNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpModule]:
    """hello-http.wasm served on the host end of the node's veth (pods reach it through the
    node's default route, the agent through the host network)."""
    root = tmp_path_factory.mktemp("modules")
    wasm = build_c(repo_root() / "examples" / "modules" / "hello-http.c", root / "hello-http.wasm")
    digest = "sha256:" + hashlib.sha256(wasm.read_bytes()).hexdigest()
    v2 = with_custom_section(wasm.read_bytes(), "wasmlet-test", b"v2")
    (root / "hello-http-v2.wasm").write_bytes(v2)
    v2_digest = "sha256:" + hashlib.sha256(v2).hexdigest()

    def handler(*args: Any, **kwargs: Any) -> _Files:
        return _Files(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer((real_node.network.host_ip, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://{real_node.network.host_ip}:{server.server_address[1]}"
        yield HttpModule(f"{base}/hello-http.wasm", digest, f"{base}/hello-http-v2.wasm",
                         v2_digest, root, base)  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
