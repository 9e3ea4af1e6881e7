"""The node's container runtime: Debian's containerd with its own config, state and socket,
the CRI plugin on runc and cgroupfs, a bridge/host-local CNI network and a local pause image."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from wasmlet_dev.realnode.network import POD_SUBNET

PAUSE_IMAGE = "wasmlet.dev/pause:dev"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
K8S_NAMESPACE = "k8s.io"  # containerd namespace the CRI plugin uses


class ContainerdError(RuntimeError):
    """containerd could not be configured or refused an import; the message says which."""


def containerd_config(workdir: Path) -> str:
    """config.toml (version 2) keeping every path under `workdir`."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{workdir / "root"}"
state = "{workdir / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{socket_path(workdir)}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # These sandboxes lack CAP_SYS_RESOURCE: the kubelet's -998 for a pod sandbox would make
  # runc fail with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{workdir / "cni"}"
  max_conf_num = 1
"""


def cni_config(workdir: Path) -> str:
    """A bridge network with host-local addresses, masqueraded to the node's address."""
    conf = {
        "cniVersion": "0.4.0",
        "name": "wasmlet-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(workdir / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2)


def socket_path(workdir: Path) -> Path:
    return workdir / "containerd.sock"


def write_config(workdir: Path) -> Path:
    """Writes config.toml and the CNI conflist; returns the config's path."""
    (workdir / "cni").mkdir(parents=True, exist_ok=True)
    (workdir / "cni" / "10-wasmlet.conflist").write_text(cni_config(workdir))
    config = workdir / "config.toml"
    config.write_text(containerd_config(workdir))
    return config


def _tar_bytes(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pause_image_tarball(pause_binary: Path, out: Path) -> Path:
    """A docker-save tarball of a scratch image holding only the static /pause binary."""
    layer = _tar_bytes({"pause": (pause_binary.read_bytes(), 0o755)})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()  # fmt: skip
    manifest = json.dumps(
        [{"Config": "config.json", "RepoTags": [PAUSE_IMAGE], "Layers": ["layer.tar"]}]
    ).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_tar_bytes({
        "layer.tar": (layer, 0o644),
        "config.json": (config, 0o644),
        "manifest.json": (manifest, 0o644),
    }))  # fmt: skip
    return out


def ctr(workdir: Path, *args: str, timeout: float = 600) -> str:
    """`ctr` against this node's containerd, in the CRI plugin's namespace."""
    argv = ["ctr", f"--address={socket_path(workdir)}", f"--namespace={K8S_NAMESPACE}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ContainerdError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done.stdout


def import_image(workdir: Path, tarball: Path) -> None:
    """Imports a docker-save or OCI tarball so the kubelet finds its images locally."""
    ctr(workdir, "images", "import", "--snapshotter=overlayfs", str(tarball))


def remove_tasks(workdir: Path) -> None:
    """Kills and deletes every container task (their shims outlive containerd otherwise)."""
    try:
        tasks = ctr(workdir, "tasks", "ls", "-q", timeout=30).split()
    except (ContainerdError, subprocess.TimeoutExpired):
        return
    for task in tasks:
        for args in (("tasks", "kill", "-s", "SIGKILL", task), ("tasks", "delete", "-f", task)):
            with contextlib.suppress(ContainerdError, subprocess.TimeoutExpired):
                ctr(workdir, *args, timeout=30)
