"""Every manifest in examples/ is applied to the running product and reaches Ready."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.fixtures.stack import Stack
from wasmlet_dev.oci import push_wasm_artifact
from wasmlet_dev.ports import free_port
from wasmlet_dev.waits import wait_until
from wasmlet_dev.wasm_build import build_c

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_REGISTRY = "127.0.0.1:5000"  # what the examples name: `wasmlet dev up`'s registry


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_reaches_ready(stack: Stack, namespace: str, example: str, tmp_path: Path) -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / example).read_text()) if d]
    apps = [d for d in docs if d["kind"] == "WasmApp"]
    assert apps, f"{example} has no WasmApp"
    for app in apps:
        oci = app["spec"]["module"]["oci"]
        repo, tag = oci["reference"].removeprefix(EXAMPLE_REGISTRY + "/").split(":")
        source = EXAMPLES / "modules" / f"{repo.removeprefix('examples/')}.c"
        wasm = build_c(source, tmp_path / f"{source.stem}.wasm").read_bytes()
        # The same module, built from source, in the test registry instead of the dev one.
        oci["reference"], _ = push_wasm_artifact(stack.registry, repo, tag, wasm)
        if "http" in app["spec"]:
            app["spec"]["http"]["port"] = free_port(stack.agents["e2e-node-1"].address)
    stack.kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))
    for app in apps:
        name = app["metadata"]["name"]
        wait_until(
            lambda n=name: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (stack.app(namespace, n).get("status") or {}).get("conditions") or []
            ),
            f"{example}: {name} Ready",
            timeout=60,
        )
