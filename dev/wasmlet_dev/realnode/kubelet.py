"""kubelet and kube-scheduler command lines and the kubelet's configuration for these machines
(cgroup v1 without the QoS hierarchy, no swap check, no local-storage isolation)."""

from __future__ import annotations

import json
from pathlib import Path

KUBELET_PORT = 10250  # inside the node's netns: nothing else listens there


def kubelet_config(workdir: Path, runtime_socket: Path, node_ip: str) -> str:
    """KubeletConfiguration (JSON is YAML) that works on cgroup v1 with cgroupfs."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "localStorageCapacityIsolation": False,
        "containerRuntimeEndpoint": f"unix://{runtime_socket}",
        "address": node_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        # The apiserver (kubectl logs/exec) reaches it over the veth only; a dev node.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "staticPodPath": "",
        "podLogsDir": str(workdir / "pod-logs"),
        "resolvConf": "/etc/resolv.conf",
        "clusterDomain": "cluster.local",
        "serializeImagePulls": False,
        # A shared disk fills with other work: evict and collect images only when nearly full.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
    }
    return json.dumps(config, indent=2)


def kubelet_args(
    binary: Path, workdir: Path, config: Path, kubeconfig: Path, node: str, node_ip: str
) -> list[str]:
    return [
        str(binary),
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={workdir / 'kubelet'}",
        f"--cert-dir={workdir / 'kubelet-pki'}",
        f"--hostname-override={node}",
        f"--node-ip={node_ip}",
        "--v=1",
    ]


def scheduler_args(binary: Path, kubeconfig: Path, port: int) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--authentication-skip-lookup=true",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--profiling=false",
    ]
