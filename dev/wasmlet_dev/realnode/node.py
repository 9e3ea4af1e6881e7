"""A real node on the local control plane: its own netns and address, containerd, kubelet and
kube-scheduler, every process started and stopped by pid (make up-node, tests/node).

    <workdir>/cluster     the control plane, serving on the host end of the node's veth
    <workdir>/containerd  containerd's config, root, state, socket and CNI config
    <workdir>/kubelet     the kubelet's root dir (pod volumes), pod-logs, logs/
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from wasmlet_dev.cluster.binaries import NodeBinaries, ensure_node_binaries
from wasmlet_dev.cluster.cluster import CONTROLLERS, SERVICE_IP, LocalCluster
from wasmlet_dev.cluster.kubectl import Kubectl
from wasmlet_dev.ports import free_port
from wasmlet_dev.processes import ManagedProcess
from wasmlet_dev.realnode import runtime
from wasmlet_dev.realnode.kubelet import kubelet_args, kubelet_config, scheduler_args
from wasmlet_dev.realnode.network import NodeNetwork
from wasmlet_dev.waits import wait_until

NODE_NAME = "wasmlet-node"
# Pods need these on top of the process-mode controllers: workloads, the CA ConfigMap every
# projected token volume mounts, and the removal of a new node's not-ready taint.
NODE_CONTROLLERS = (*CONTROLLERS, "daemonset-controller", "deployment-controller",
                    "replicaset-controller", "root-ca-certificate-publisher-controller",
                    "node-lifecycle-controller")  # fmt: skip
NETNS_DIR = Path("/var/run/netns")


def unmount_under(directory: Path) -> None:
    """Lazily unmounts every mount below `directory`, deepest first (pod volumes, rootfs)."""
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _netns_names() -> set[str]:
    return set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()


class RealNode:
    """The control plane plus one real node; a context manager, or start()/stop()."""

    def __init__(self, workdir: Path, *, images: Sequence[Path] = (), node: str = NODE_NAME):
        self.workdir = workdir.resolve()
        self.node = node
        self.images = list(images)
        self.network = NodeNetwork.pick()
        self.cluster = LocalCluster(self.workdir / "cluster", address=self.network.host_ip,
                                    controllers=NODE_CONTROLLERS)  # fmt: skip
        self.processes: list[ManagedProcess] = []
        self.startup_seconds = 0.0
        self._netns_before: set[str] = set()
        self._binaries: NodeBinaries | None = None

    @property
    def containerd_dir(self) -> Path:
        return self.workdir / "containerd"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def node_ip(self) -> str:
        return self.network.node_ip

    def kubectl(self) -> Kubectl:
        return self.cluster.kubectl()

    def __enter__(self) -> RealNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> RealNode:
        """Brings everything up and waits until the node is Ready; stops it all on failure."""
        self._binaries = binaries = ensure_node_binaries()  # may build: not in startup time
        began = time.monotonic()
        self._netns_before = _netns_names()
        try:
            self._start(binaries)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start(self, binaries: NodeBinaries) -> None:
        unmount_under(self.workdir)  # a run killed before it cleaned up
        for stale in ("containerd", "kubelet", "kubelet-pki", "logs", "pod-logs", "kubelet.json"):
            shutil.rmtree(self.workdir / stale, ignore_errors=True)
        self.network.create()
        self.cluster._binaries = binaries.kube
        self.cluster.start()
        assert self.cluster.ports is not None
        self.network.route_service(SERVICE_IP, self.cluster.ports.apiserver)

        config = runtime.write_config(self.containerd_dir)
        containerd = self._spawn("containerd", self.network.enter(
            [shutil.which("containerd") or "containerd", f"--config={config}"]))  # fmt: skip
        wait_until(lambda: runtime.ctr(self.containerd_dir, "version", timeout=10),
                   what="containerd to answer on its socket", timeout=60, interval=0.2,
                   watch=[containerd])  # fmt: skip
        pause = runtime.pause_image_tarball(binaries.pause, self.workdir / "pause.tar")
        for tarball in (pause, *self.images):
            runtime.import_image(self.containerd_dir, tarball)

        kubeconfig = self.cluster.kubeconfig  # admin (system:masters): a dev node
        self._spawn("kube-scheduler", scheduler_args(binaries.kube_scheduler, kubeconfig,
                                                     free_port()))  # fmt: skip
        kubelet_json = self.workdir / "kubelet.json"
        kubelet_json.write_text(kubelet_config(
            self.workdir, runtime.socket_path(self.containerd_dir), self.node_ip))  # fmt: skip
        kubelet = self._spawn("kubelet", self.network.enter(kubelet_args(
            binaries.kubelet, self.workdir, kubelet_json, kubeconfig, self.node,
            self.node_ip)))  # fmt: skip
        wait_until(self._node_schedulable, what=f"node {self.node} to be Ready and untainted",
                   timeout=120, interval=0.5, watch=[containerd, kubelet])  # fmt: skip

    def import_image(self, tarball: Path) -> None:
        """Imports another image tarball into the node's containerd."""
        runtime.import_image(self.containerd_dir, tarball)

    def _node_schedulable(self) -> bool:
        ready = '{.status.conditions[?(@.type=="Ready")].status}'
        out = self.kubectl()("get", "node", self.node, "-o",
                             f"jsonpath={ready} {{.spec.taints[*].key}}", check=False)  # fmt: skip
        return out.stdout.strip() == "True"

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess.start(name, argv, self.log_dir / f"{name}.log", cwd=self.workdir)
        self.processes.append(proc)
        return proc

    def check_alive(self) -> None:
        """Raises RuntimeError naming the first process that has exited."""
        self.cluster.check_alive()
        for proc in self.processes:
            if not proc.alive():
                raise RuntimeError(f"the real node broke: {proc.describe_exit()}")

    def stop(self) -> None:
        """Stops the kubelet, every container, containerd, the scheduler and the control
        plane by pid; then unmounts what they left, removes pod netns and the veth pair."""
        by_name = {p.name: p for p in self.processes}
        if "kubelet" in by_name:
            by_name["kubelet"].stop()
        if "containerd" in by_name and by_name["containerd"].alive():
            runtime.remove_tasks(self.containerd_dir)
        for proc in reversed(self.processes):
            proc.stop()
        self.cluster.stop()
        unmount_under(self.workdir)
        for name in _netns_names() - self._netns_before:
            if name.startswith("cni-"):  # pod sandboxes our containerd made
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.network.delete()
