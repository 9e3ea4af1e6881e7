"""A replica that has not won the Lease still serves /metrics, /healthz and /readyz, so both
operator pods pass their probes and both are scrape targets (deploy/cluster/operator.yaml)."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from wasmlet_dev.ports import free_port
from wasmlet_dev.processes import ManagedProcess
from wasmlet_dev.waits import wait_until

# An API server that is never there: the replica keeps retrying the Lease, as a standby does.
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return str(resp.read().decode())


def test_standby_answers_probes_and_metrics_before_the_lease(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.replace("{port}", str(free_port())))
    metrics, health = free_port(), free_port()
    argv = [sys.executable, "-m", "wasmlet_operator.main", f"--kubeconfig={kubeconfig}"]
    argv += [f"--metrics-port={metrics}", f"--health-port={health}", "--lease-seconds=5"]
    proc = ManagedProcess.start("operator", argv, tmp_path / "operator.log")
    try:
        base = f"http://127.0.0.1:{health}"
        assert wait_until(lambda: get(f"{base}/healthz"), "/healthz", watch=[proc]) == "ok\n"
        assert get(f"{base}/readyz") == "ok\n"
        text = get(f"http://127.0.0.1:{metrics}/metrics")
        assert "wasmlet_operator_leader 0.0" in text
        # It is still trying for the Lease (the line follows the client's retries: wait for it).
        wait_until(lambda: "leader election" in proc.log_path.read_text(errors="replace"),
                   "the operator to log its leader election attempts", watch=[proc])  # fmt: skip
    finally:
        proc.stop()
