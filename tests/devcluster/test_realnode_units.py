"""Pure parts of the real node: the apiserver on a node's address, containerd, CNI and
kubelet configuration, the pause image tarball, the netns wrapper."""

from __future__ import annotations

import json
import tarfile
import tomllib
from pathlib import Path

from wasmlet_dev.cluster.cluster import Ports, apiserver_args
from wasmlet_dev.cluster.pki import write_cluster_pki
from wasmlet_dev.realnode import runtime
from wasmlet_dev.realnode.kubelet import kubelet_config
from wasmlet_dev.realnode.network import NodeNetwork
from wasmlet_dev.realnode.node import NODE_CONTROLLERS

PORTS = Ports(etcd_client=1001, etcd_peer=1002, apiserver=1003, controller_manager=1004)


def test_apiserver_on_a_node_address_advertises_it_and_reconciles_endpoints(
    tmp_path: Path,
) -> None:
    pki = write_cluster_pki(tmp_path / "pki", "10.96.0.1", ["10.123.0.1"])
    argv = apiserver_args(Path("/kas"), pki, tmp_path / "t.csv", PORTS, "10.123.0.1")
    assert "--bind-address=10.123.0.1" in argv
    assert "--advertise-address=10.123.0.1" in argv
    assert "--endpoint-reconciler-type=lease" in argv
    assert "--kubelet-preferred-address-types=InternalIP" in argv
    loopback = apiserver_args(Path("/kas"), pki, tmp_path / "t.csv", PORTS)
    assert "--endpoint-reconciler-type=none" in loopback


def test_node_controllers_run_workloads_and_publish_the_root_ca() -> None:
    needed = {"daemonset-controller", "deployment-controller", "replicaset-controller",
              "root-ca-certificate-publisher-controller", "node-lifecycle-controller"}  # fmt: skip
    assert needed <= set(NODE_CONTROLLERS)


def test_containerd_config_keeps_paths_in_workdir_and_restricts_oom_score(tmp_path: Path) -> None:
    config = tomllib.loads(runtime.containerd_config(tmp_path))
    assert config["root"].startswith(str(tmp_path))
    assert config["grpc"]["address"] == str(runtime.socket_path(tmp_path))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == runtime.PAUSE_IMAGE
    assert cri["restrict_oom_score_adj"] is True
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    cni = json.loads(runtime.cni_config(tmp_path))
    assert cni["plugins"][0]["ipam"]["dataDir"].startswith(str(tmp_path))


def test_kubelet_config_works_on_cgroup_v1() -> None:
    config = json.loads(kubelet_config(Path("/w"), Path("/w/c.sock"), "10.123.0.2"))
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupsPerQOS"] is False
    assert config["enforceNodeAllocatable"] == []
    assert config["address"] == "10.123.0.2"


def test_pause_image_is_one_layer_holding_the_binary(tmp_path: Path) -> None:
    binary = tmp_path / "pause-bin"
    binary.write_bytes(b"\x7fELF")
    out = runtime.pause_image_tarball(binary, tmp_path / "pause.tar")
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [runtime.PAUSE_IMAGE]
        with tarfile.open(fileobj=tar.extractfile("layer.tar")) as layer:
            assert layer.getnames() == ["pause"]
            assert layer.getmember("pause").mode == 0o755


def test_netns_commands_enter_only_the_network_namespace() -> None:
    net = NodeNetwork("wasmlet-x", "wlhx", "wlnx", "10.123.0.1", "10.123.0.2")
    assert net.enter(["kubelet"]) == ["nsenter", "--net=/var/run/netns/wasmlet-x", "--", "kubelet"]
