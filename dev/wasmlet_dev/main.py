"""`wasmlet dev up` (the `wasmlet-dev` entry point): the whole product on this machine.

A local control plane (etcd, kube-apiserver, kube-controller-manager built from source), a
registry on 127.0.0.1:5000 holding the example modules (built from examples/modules/*.c),
the operator and three node agents (each a process with its own node name, loopback address
127.0.1.N and Node-bound credentials), and the examples applied.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from wasmlet.version import wasmlet_version
from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_dev.cluster.cli import default_workdir, run_up
from wasmlet_dev.cluster.cluster import LocalCluster
from wasmlet_dev.cluster.identities import admin_client
from wasmlet_dev.cluster.kubectl import apply_files, manifest_files
from wasmlet_dev.cluster.stack import (
    kubeconfig_with,
    operator_token,
    start_agent,
    start_operator,
    wait_for_nodes,
)
from wasmlet_dev.oci import push_wasm_artifact
from wasmlet_dev.registry import start_registry
from wasmlet_dev.wasm_build import build_c


def node_address(index: int) -> str:
    """Each local agent gets its own loopback address, so every one can serve port 8080."""
    return f"127.0.1.{index}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wasmlet dev", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {wasmlet_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything in the foreground; Ctrl-C stops it")
    up.add_argument("--workdir", type=Path, default=None)
    up.add_argument("--port", type=int, default=None, help="kube-apiserver port (default: free)")
    up.add_argument("--agents", type=int, default=3)
    up.add_argument("--registry-port", type=int, default=5000)
    up.add_argument("--no-examples", action="store_true", help="do not apply examples/")
    up.add_argument("--node-grace-seconds", type=float, default=20.0)
    node = sub.add_parser(
        "node",
        help="start the control plane and a real node (containerd, kubelet, kube-scheduler in "
        "a netns of their own) with the wasmlet image loaded, in the foreground",
    )
    node.add_argument("--workdir", type=Path, default=None, help="default: .cache/dev/node")
    node.add_argument("--no-image", action="store_true", help="do not build or import the image")
    sub.add_parser(
        "image",
        help="build the wasmlet image FROM a locally built base (no registry) and print the "
        "path of its docker-save tarball (cached)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "image":
        from wasmlet_dev.images import image_tarball

        print(image_tarball())
        return 0
    if args.command == "node":
        from wasmlet_dev.realnode.cli import run_node

        return run_node(args.workdir, with_image=not args.no_image)
    workdir: Path = args.workdir or default_workdir()
    root = repo_root()

    def on_ready(cluster: LocalCluster, stack: contextlib.ExitStack) -> None:
        registry = start_registry(workdir / "registry", port=args.registry_port)
        stack.callback(registry.stop)
        for source in sorted((root / "examples" / "modules").glob("*.c")):
            wasm = build_c(source, workdir / "modules" / f"{source.stem}.wasm").read_bytes()
            ref, _ = push_wasm_artifact(registry, f"examples/{source.stem}", "v1", wasm)
            print(f"wasmlet dev: pushed {ref}", flush=True)
        api = admin_client(cluster.kubeconfig)
        stack.callback(api.close)
        endpoint = cluster.endpoint
        nodes = [f"wasmlet-node-{i}" for i in range(1, args.agents + 1)]
        for i, node in enumerate(nodes, start=1):
            agent = start_agent(workdir, api, endpoint, node, node_address(i),
                                {"wasmlet.dev/zone": "local"})  # fmt: skip
            stack.callback(agent.process.stop)
        op_kubeconfig = kubeconfig_with(
            workdir / "identities" / "operator.kubeconfig", endpoint, operator_token(api),
            "wasmlet-operator",
        )  # fmt: skip
        operator = start_operator(workdir, op_kubeconfig,
                                  node_grace_seconds=args.node_grace_seconds)  # fmt: skip
        stack.callback(operator.stop)
        wait_for_nodes(api, nodes)
        print(f"wasmlet dev: operator and {len(nodes)} agents up (logs: {workdir / 'logs'})")
        if not args.no_examples:
            apply_files(cluster.kubectl(), manifest_files(root / "examples"))
            print("wasmlet dev: applied examples/ — try `kubectl get wasmapps` and "
                  f"`curl http://{node_address(1)}:8080/`", flush=True)  # fmt: skip
        print(f"wasmlet dev: kubectl built from source: {cluster.binaries.kubectl}", flush=True)

    return run_up(workdir, apiserver_port=args.port, on_ready=on_ready)


if __name__ == "__main__":
    sys.exit(main())
