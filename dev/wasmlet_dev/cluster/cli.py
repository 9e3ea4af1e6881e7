"""`wasmlet dev up`: a local control plane in the foreground, for trying wasmlet out."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO

from wasmlet_dev.cluster.binaries import BinariesError, repo_root
from wasmlet_dev.cluster.cluster import ClusterStartError, LocalCluster
from wasmlet_dev.cluster.kubectl import KubectlError, apply_files, deploy_files

# Called once the cluster is up with CRDs and RBAC applied; it may start more processes
# (operator, node agents) and registers their cleanup on the ExitStack, which is unwound
# before the cluster stops.
OnReady = Callable[[LocalCluster, contextlib.ExitStack], None]


def default_workdir() -> Path:
    return repo_root() / ".cache" / "dev"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wasmlet dev", description="A local Kubernetes control plane for wasmlet."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up",
        help="start etcd, kube-apiserver and kube-controller-manager with wasmlet's CRDs and "
        "RBAC, and keep them running until Ctrl-C",
    )
    up.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="state, logs and kubeconfig (default: .cache/dev in the source checkout); wiped "
        "at each start",
    )
    up.add_argument(
        "--port", type=int, default=None, help="kube-apiserver port (default: a free one)"
    )
    return parser


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Makes SIGINT and SIGTERM raise KeyboardInterrupt (even if SIGINT was ignored, as for a
    background job), so either one unwinds and stops the cluster cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_up(
    workdir: Path,
    *,
    apiserver_port: int | None = None,
    crds_dir: Path | None = None,
    deploy_dir: Path | None = None,
    on_ready: OnReady | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Starts the cluster, applies `crds_dir` then `deploy_dir` (default: the checkout's crds/
    and deploy/), calls `on_ready`, then runs until SIGINT/SIGTERM and stops everything.
    Returns the process exit code."""
    crds = crds_dir if crds_dir is not None else repo_root() / "crds"
    deploy = deploy_dir if deploy_dir is not None else repo_root() / "deploy"
    cluster = LocalCluster(workdir, apiserver_port=apiserver_port, preinstall=[crds])
    try:
        with _signals_interrupt():
            print(f"wasmlet dev: starting a local control plane in {cluster.workdir}", file=out)
            with cluster, contextlib.ExitStack() as stack:
                apply_files(cluster.kubectl(), deploy_files(deploy))
                if on_ready is not None:
                    on_ready(cluster, stack)
                _print_ready(cluster, out)
                while True:
                    cluster.check_alive()
                    time.sleep(0.5)
    except KeyboardInterrupt:
        print("wasmlet dev: stopped", file=out)
        return 0
    except (ClusterStartError, BinariesError, KubectlError) as e:
        print(f"wasmlet dev: {e}", file=sys.stderr)
        return 1


def _print_ready(cluster: LocalCluster, out: TextIO) -> None:
    print(
        f"wasmlet dev: ready in {cluster.startup_seconds:.1f}s at {cluster.server} "
        f"(logs: {cluster.log_dir})\n"
        f"\n    export KUBECONFIG={cluster.kubeconfig}\n"
        f"    kubectl get wasmapps\n"
        f"\nStop with Ctrl-C (or: kill {os.getpid()}).",
        file=out,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        workdir = args.workdir if args.workdir is not None else default_workdir()
        return run_up(workdir, apiserver_port=args.port)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects others


if __name__ == "__main__":
    sys.exit(main())
