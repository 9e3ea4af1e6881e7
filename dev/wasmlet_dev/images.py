"""The wasmlet image built from the Dockerfile with no public registry: a Docker engine of
our own (Debian's docker.io) when none runs, a locally built base, and a cached tarball.

    ~/.cache/wasmlet/
      images/wasmlet-base-<key>.tar   hack/build-base-image.sh (debootstrap + CA bundle)
      images/wasmlet-<key>.tar        the image, keyed by the base and every file it copies
      docker/                         our dockerd's data-root (layer cache between runs)
      docker.lock                     one dockerd per data-root: held while it runs

A tarball is what containerd imports (`ctr -n k8s.io images import`), so a warm run needs
no Docker engine at all.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from types import TracebackType
from typing import IO

from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_dev.processes import ManagedProcess
from wasmlet_dev.waits import wait_until

IMAGE = "wasmlet:dev"
# What the Dockerfile copies (.dockerignore allows exactly these).
CONTEXT = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "wasmlet", "operator",
           "node-agent")  # fmt: skip


class ImageError(RuntimeError):
    """The image could not be built; the message names the step and what to install or do."""


def cache_root() -> Path:
    """The cache hack/build-kube.sh uses too ($WASMLET_CACHE, else ~/.cache/wasmlet)."""
    if os.environ.get("WASMLET_CACHE"):
        return Path(os.environ["WASMLET_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "wasmlet"


def package_version(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def context_key(root: Path, base: str) -> str:
    """A hash of the base image name and every file the build context holds."""
    h = hashlib.sha256(base.encode())
    for name in CONTEXT:
        top = root / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _docker_ok(env: dict[str, str]) -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], env=env, capture_output=True, timeout=30)
    return done.returncode == 0


class DockerEngine:
    """The Docker engine at $DOCKER_HOST if one answers, else a dockerd of our own with its own
    data-root and socket, no bridge and no iptables rules (builds use the host network),
    stopped by its pid."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.env = dict(os.environ)
        self.process: ManagedProcess | None = None
        self._run_dir = run_dir
        self._made_run_dir: Path | None = None
        self._lock: IO[bytes] | None = None

    def __enter__(self) -> DockerEngine:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> DockerEngine:
        if _docker_ok(self.env):
            return self
        dockerd = shutil.which("dockerd")
        if dockerd is None or shutil.which("docker") is None:
            raise ImageError(
                "dockerd is missing: apt-get install docker.io (hack/install-deps.sh does)"
            )
        root = cache_root()
        root.mkdir(parents=True, exist_ok=True)
        self._lock = (root / "docker.lock").open("wb")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # another run's dockerd: wait for it to stop
        # Short: containerd's socket lives under exec-root and unix paths are <= 108 bytes.
        run = self._run_dir or Path(tempfile.mkdtemp(prefix="wasmlet-dockerd-"))
        self._made_run_dir = None if self._run_dir else run
        run.mkdir(parents=True, exist_ok=True)
        sock = run / "docker.sock"
        self.process = ManagedProcess.start(
            "dockerd",
            [dockerd, f"--data-root={root / 'docker'}", f"--exec-root={run / 'x'}",
             f"--pidfile={run / 'dockerd.pid'}", f"--host=unix://{sock}", "--bridge=none",
             "--iptables=false", "--ip-masq=false"],
            run / "dockerd.log",
        )  # fmt: skip
        self.env["DOCKER_HOST"] = f"unix://{sock}"
        wait_until(lambda: _docker_ok(self.env), what="dockerd to answer", timeout=90,
                   interval=0.5, watch=[self.process])  # fmt: skip
        return self

    def run(self, *args: str, timeout: float = 1800) -> str:
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        if done.returncode != 0:
            raise ImageError(f"docker {' '.join(args)} failed:\n{done.stdout[-3000:]}"
                             f"{done.stderr[-3000:]}")  # fmt: skip
        return done.stdout

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)
            self.process = None
        if self._made_run_dir is not None:
            shutil.rmtree(self._made_run_dir, ignore_errors=True)
            self._made_run_dir = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def base_image(engine: DockerEngine, root: Path) -> str:
    """hack/build-base-image.sh's image, loaded into `engine`."""
    script = root / "hack" / "build-base-image.sh"
    done = subprocess.run(["bash", str(script)], env=engine.env, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    if done.returncode != 0:
        raise ImageError(f"{script} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def base_key(root: Path) -> str:
    """The base image's name, computed like hack/build-base-image.sh does (no engine needed)."""
    h = hashlib.sha256((root / "hack" / "build-base-image.sh").read_bytes())
    h.update(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes())
    return f"wasmlet-base:{h.hexdigest()[:16]}"


def image_tarball(root: Path | None = None, tag: str = IMAGE) -> Path:
    """A `docker save` tarball of the wasmlet image `tag` built FROM the local base; reused
    while the base and the build context are unchanged, else built (minutes the first time)."""
    root = root or repo_root()
    out_dir = cache_root() / "images"
    key = context_key(root, base_key(root) + tag)
    tarball = out_dir / f"wasmlet-{key}.tar"
    if tarball.is_file():
        return tarball
    with DockerEngine() as engine:
        base = base_image(engine, root)
        version = package_version(root)
        engine.run("build", "--network=host", f"--build-arg=BASE={base}",
                   f"--build-arg=VERSION={version}", "-t", tag, str(root))  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        engine.run("save", "-o", f"{tarball}.tmp", tag)
    for old in out_dir.glob("wasmlet-*.tar"):  # earlier builds of the image, not the base
        if not old.name.startswith("wasmlet-base-"):
            old.unlink(missing_ok=True)
    os.replace(f"{tarball}.tmp", tarball)
    return tarball
