"""Finds the control-plane binaries, building them once from their Go modules if needed."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN_DIR_ENV = "WASMLET_KUBE_BIN_DIR"
BINARY_NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")


class BinariesError(RuntimeError):
    """The binaries are missing and could not be built; the message says how to fix it."""


@dataclass(frozen=True)
class KubeBinaries:
    """Absolute paths of the control-plane binaries."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path

    @classmethod
    def in_dir(cls, directory: Path) -> KubeBinaries:
        """The binaries in `directory`; raises BinariesError naming any that is missing."""
        missing = [n for n in BINARY_NAMES if not os.access(directory / n, os.X_OK)]
        if missing:
            raise BinariesError(
                f"{directory} lacks executable {', '.join(missing)}; point {BIN_DIR_ENV} at a "
                f"directory holding {', '.join(BINARY_NAMES)}, or unset it to build them with "
                f"hack/build-kube.sh"
            )
        return cls(
            etcd=directory / "etcd",
            kube_apiserver=directory / "kube-apiserver",
            kube_controller_manager=directory / "kube-controller-manager",
            kubectl=directory / "kubectl",
        )


def repo_root() -> Path:
    """The source checkout this package lives in (it holds hack/, crds/ and deploy/)."""
    return Path(__file__).resolve().parents[3]  # <root>/dev/wasmlet_dev/cluster/binaries.py


def build_script() -> Path:
    return repo_root() / "hack" / "build-kube.sh"


def ensure_binaries() -> KubeBinaries:
    """Binaries from $WASMLET_KUBE_BIN_DIR, else from hack/build-kube.sh's cache (building on
    first use, which takes minutes; its progress goes to our stderr)."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        return KubeBinaries.in_dir(Path(override))
    return KubeBinaries.in_dir(_run_build_script())


@dataclass(frozen=True)
class NodeBinaries:
    """The control plane's binaries plus what a real node runs (build-kube.sh node)."""

    kube: KubeBinaries
    kubelet: Path
    kube_scheduler: Path
    pause: Path


def ensure_node_binaries() -> NodeBinaries:
    """Like ensure_binaries, also building kubelet, kube-scheduler and a static pause."""
    override = os.environ.get(BIN_DIR_ENV)
    directory = Path(override) if override else _run_build_script("node")
    missing = [n for n in ("kubelet", "kube-scheduler", "pause") if not (directory / n).is_file()]
    if missing:
        raise BinariesError(f"{directory} lacks {', '.join(missing)}; run hack/build-kube.sh node")
    return NodeBinaries(
        KubeBinaries.in_dir(directory),
        directory / "kubelet",
        directory / "kube-scheduler",
        directory / "pause",
    )


def find_kubectl() -> Path:
    """kubectl for talking to any cluster: the built one if available, else kubectl on PATH
    (a kind user may have no Go toolchain), else build it."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        return KubeBinaries.in_dir(Path(override)).kubectl
    if shutil.which("go") is None:
        on_path = shutil.which("kubectl")
        if on_path:
            return Path(on_path)
    return ensure_binaries().kubectl


def _run_build_script(*args: str) -> Path:
    script = build_script()
    if not script.is_file():
        raise BinariesError(
            f"{script} not found (wasmlet is not running from a source checkout); set "
            f"{BIN_DIR_ENV} to a directory holding {', '.join(BINARY_NAMES)}"
        )
    if shutil.which("go") is None:
        raise BinariesError(
            "Go is missing, and it is needed to build etcd and kube-apiserver once: install Go "
            f">= 1.26 (https://go.dev/doc/install), or set {BIN_DIR_ENV} to a directory holding "
            f"{', '.join(BINARY_NAMES)}"
        )
    # Relay the script's progress (a first build takes minutes) and keep its tail for errors.
    tail: collections.deque[str] = collections.deque(maxlen=30)
    with subprocess.Popen(
        ["bash", str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line)
        out = proc.stdout.read()
        code = proc.wait()
    if code != 0:
        raise BinariesError(
            f"{script} failed with exit code {code}; its last output:\n{''.join(tail)}"
        )
    lines = out.strip().splitlines()
    if not lines:
        raise BinariesError(f"{script} printed no directory; its last output:\n{''.join(tail)}")
    return Path(lines[-1])
