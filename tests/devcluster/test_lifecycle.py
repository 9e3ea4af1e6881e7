"""Starting and stopping control planes of their own: failures clean up, stop leaves nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.cluster import Kube
from tests.fixtures.tools import missing_tool
from wasmlet_dev.cluster.binaries import BinariesError, KubeBinaries, ensure_binaries
from wasmlet_dev.cluster.cli import run_up
from wasmlet_dev.cluster.cluster import ClusterStartError, LocalCluster
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains `text` (read from /proc, nothing is signalled)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def binaries() -> KubeBinaries:
    """The control-plane binaries; these tests start clusters of their own even when the session
    runs against --existing-cluster."""
    try:
        return ensure_binaries()
    except BinariesError as e:
        missing_tool(f"no control-plane binaries: {e}")


def test_taken_apiserver_port_fails_naming_the_port_and_leaves_no_process(
    binaries: KubeBinaries, tmp_path: Path
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        cluster = LocalCluster(tmp_path, binaries=binaries, apiserver_port=port)
        with pytest.raises(ClusterStartError) as raised:
            cluster.start()
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "already in use" in message
    assert str(tmp_path / "logs" / "kube-apiserver.log") in message
    assert len(cluster.pids) == 2  # etcd came up, kube-apiserver did not
    assert [pid for pid in cluster.pids if pid_alive(pid)] == []


def test_a_binary_that_exits_is_reported_with_its_log(
    binaries: KubeBinaries, tmp_path: Path
) -> None:
    broken = dataclasses.replace(binaries, kube_controller_manager=Path("/bin/false"))
    cluster = LocalCluster(tmp_path, binaries=broken)
    with pytest.raises(ClusterStartError, match=r"kube-controller-manager \(pid \d+\) exited"):
        cluster.start()
    assert len(cluster.pids) == 3
    assert [pid for pid in cluster.pids if pid_alive(pid)] == []


def test_a_second_cluster_in_the_same_workdir_is_refused(kube: Kube) -> None:
    if kube.local is None:
        pytest.skip("needs the local control plane")
    with pytest.raises(ClusterStartError, match="another local cluster is running"):
        LocalCluster(kube.local.workdir, binaries=kube.local.binaries).start()
    kube.local.check_alive()  # and the running one is untouched


def test_dev_up_serves_until_sigterm_then_leaves_no_process(
    binaries: KubeBinaries, tmp_path: Path
) -> None:
    workdir = tmp_path / "dev"
    env = dict(os.environ, WASMLET_KUBE_BIN_DIR=str(binaries.kubectl.parent))
    stderr = (tmp_path / "up.stderr").open("w")
    up = subprocess.Popen(
        [sys.executable, "-m", "wasmlet_dev.cluster.cli", "up", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    try:
        assert up.stdout is not None
        kubeconfig = ""
        for line in up.stdout:
            if line.strip().startswith("export KUBECONFIG="):
                kubeconfig = line.strip().removeprefix("export KUBECONFIG=")
                break
        assert kubeconfig, f"no KUBECONFIG printed; stderr:\n{(tmp_path / 'up.stderr').read_text()}"
        crds = subprocess.run(
            [binaries.kubectl, f"--kubeconfig={kubeconfig}", "get", "crd", "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "wasmapps.wasmlet.dev" in crds.stdout
        children = set(pids_mentioning(str(workdir))) - {up.pid}
        assert len(children) == 3  # etcd, kube-apiserver, kube-controller-manager
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        stderr.close()
    assert [pid for pid in children if pid_alive(pid)] == []
    assert pids_mentioning(str(workdir)) == []


def test_on_ready_hook_runs_with_the_cluster_up_and_is_unwound_before_stop(
    binaries: KubeBinaries, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}

    def on_ready(cluster: LocalCluster, stack: contextlib.ExitStack) -> None:
        seen["pids"] = cluster.pids
        operator = cluster.kubeconfig_for("wasmlet-operator")
        whoami = cluster.kubectl()(
            f"--kubeconfig={operator}",
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        )
        seen["operator"] = whoami.stdout.strip()
        stack.callback(
            lambda: seen.setdefault("alive at cleanup", all(map(pid_alive, cluster.pids)))
        )
        raise KeyboardInterrupt  # what Ctrl-C does while `up` waits

    with open(os.devnull, "w") as devnull:
        assert run_up(tmp_path, on_ready=on_ready, out=devnull) == 0
    assert seen["operator"] == "system:serviceaccount:wasmlet-system:wasmlet-operator"
    assert seen["alive at cleanup"] is True
    pids = seen["pids"]
    assert isinstance(pids, list) and len(pids) == 3
    wait_until(lambda: not any(map(pid_alive, pids)), "no process left", timeout=1)
