"""Runs kubectl the way a user does and applies the repo's CRDs and RBAC with it."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

FIELD_MANAGER = "wasmlet-dev"


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message holds the command and its output."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        cmd = " ".join(str(a) for a in result.args)
        super().__init__(
            f"`{cmd}` exited with code {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )


class Kubectl:
    """kubectl bound to one kubeconfig."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(
        self,
        *args: str | os.PathLike[str],
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Runs `kubectl --kubeconfig=<ours> *args`; with `check`, raises KubectlError on a
        non-zero exit (its message includes stderr, unlike CalledProcessError's)."""
        argv = [os.fspath(self.binary), f"--kubeconfig={self.kubeconfig}"]
        argv += [os.fspath(a) for a in args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result)
        return result


KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def manifest_files(directory: Path) -> list[Path]:
    """The YAML files of a directory in name order ([] if it is missing), without its
    kustomization (a build file for `kubectl apply -k`, not an object)."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and p.is_file() and p.name not in KUSTOMIZATIONS
    )


def deploy_files(deploy_dir: Path) -> list[Path]:
    """deploy/'s numbered files (`NN-*.yaml`): namespace, identities, RBAC and admission
    policies, which is what the process-mode cluster installs. Not the workloads in
    deploy/cluster/ nor the rendered deploy/wasmlet.yaml (pods need a real node:
    `kubectl apply -k deploy/`, tests/node)."""
    return [p for p in manifest_files(deploy_dir) if re.match(r"^\d\d-", p.name)]


def apply_files(kubectl: Kubectl, files: Sequence[Path]) -> list[str]:
    """Server-side applies `files` in order; returns the applied objects as kind/name."""
    if not files:
        return []
    args: list[str | os.PathLike[str]] = ["apply", "--server-side", "--force-conflicts"]
    args += [f"--field-manager={FIELD_MANAGER}", "-o", "name"]
    for f in files:
        args += ["-f", f]
    return kubectl(*args).stdout.split()


def wait_established(kubectl: Kubectl, crd_names: Sequence[str], timeout: float = 60.0) -> None:
    """Waits until the CRDs (as printed by apply -o name) serve their kinds."""
    crds = [n for n in crd_names if n.startswith("customresourcedefinition")]
    if crds:
        kubectl(
            "wait",
            "--for=condition=Established",
            f"--timeout={timeout:.0f}s",
            *crds,
            timeout=timeout + 10,
        )


def install(kubectl: Kubectl, crds_dir: Path | None, deploy_dir: Path | None) -> list[str]:
    """Applies every YAML in `crds_dir`, waits until they are Established, then the numbered
    files of `deploy_dir` (deploy_files).
    Returns what was applied."""
    applied = apply_files(kubectl, manifest_files(crds_dir)) if crds_dir else []
    wait_established(kubectl, applied)
    if deploy_dir:
        applied += apply_files(kubectl, deploy_files(deploy_dir))
    return applied
