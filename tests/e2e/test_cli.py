"""`wasmlet status` and `wasmlet logs` against the running product, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.cluster.binaries import find_kubectl
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def wasmlet(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(stack.kube.kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "wasmlet.cli", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_status_and_logs(stack: Stack, namespace: str) -> None:
    stack.apply(namespace, wasmapp("chatty", stack.modules["long"], replicas=2))
    wait_until(
        lambda: (stack.app(namespace, "chatty").get("status") or {}).get("readyReplicas") == 2,
        "2 ready",
    )
    out = wasmlet(stack, "status", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert "chatty" in out.stdout and "2/2" in out.stdout and "True/InstancesReady" in out.stdout
    for node in stack.agents:
        assert node in out.stdout  # the NODES table
    assert out.stdout.count("Running") >= 2  # the INSTANCES table

    def sources(stdout: str) -> set[str]:
        return {line.split()[0] for line in stdout.splitlines() if "tick" in line}

    # Two instances: each line says where it came from, as `kubectl logs --prefix` does.
    logs = wait_until(
        lambda: (
            (o := wasmlet(stack, "logs", "chatty", "-n", namespace)).returncode == 0
            and len(sources(o.stdout)) == 2
            and o
        ),
        "log lines from both instances",
    )
    for source in sources(logs.stdout):
        node, _, instance = source.removeprefix("[").removesuffix("]").partition("/")
        assert node in stack.agents and instance.startswith("chatty-"), source
    missing = wasmlet(stack, "logs", "nope", "-n", namespace)
    assert missing.returncode == 1 and "no instances of" in missing.stderr


def test_kubectl_habits_context_namespace_output_and_plugin(
    stack: Stack, namespace: str, tmp_path: Path
) -> None:
    stack.apply(namespace, wasmapp("habits", stack.modules["long"], replicas=1))
    wait_until(
        lambda: (stack.app(namespace, "habits").get("status") or {}).get("readyReplicas") == 1,
        "1 ready",
    )
    # A kubeconfig whose context sets this namespace: no -n needed, as with kubectl.
    config = yaml.safe_load(Path(stack.kube.kubeconfig).read_text())
    context = dict(config["contexts"][0])
    context = {"name": "habits", "context": {**context["context"], "namespace": namespace}}
    config["contexts"].append(context)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump(config))
    flags = ["--kubeconfig", str(kubeconfig), "--context", "habits"]
    out = wasmlet(stack, "status", "-o", "json", *flags)
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    apps = [i["metadata"]["name"] for i in items if i["kind"] == "WasmApp"]
    assert apps == ["habits"]  # only the context's namespace
    placement = next(i for i in items if i["kind"] == "WasmPlacement")
    instance = placement["status"]["instances"][0]["name"]
    every = wasmlet(stack, "status", "-A", "-o", "yaml", *flags)
    assert every.returncode == 0, every.stderr
    assert namespace in every.stdout and "kind: List" in every.stdout
    wide = wasmlet(stack, "status", "-o", "wide", *flags)
    assert "AGENT-PORT" in wide.stdout and instance in wide.stdout
    one = wait_until(
        lambda: (
            (
                o := wasmlet(stack, "logs", "habits", "--instance", instance, "--tail", "3", *flags)
            ).returncode
            == 0
            and "tick" in o.stdout
            and o
        ),
        "logs of the one instance",
    )
    assert len(one.stdout.splitlines()) <= 3
    # The same as a kubectl plugin (kubectl finds kubectl-wasmlet on PATH).
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    plugin = subprocess.run(
        [str(find_kubectl()), "wasmlet", "status", *flags],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert plugin.returncode == 0, plugin.stderr
    assert "habits" in plugin.stdout and "NODES" in plugin.stdout
    version = wasmlet(stack, "--version")
    assert version.returncode == 0 and version.stdout.startswith("wasmlet ")
