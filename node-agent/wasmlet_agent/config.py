"""The agent's configuration: one value, built once from the command line (or by a test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FrontLimits:
    """What one node allows any client of its HTTP apps."""

    header_timeout: float = 10.0  # connection (or last response) -> request headers read
    body_timeout: float = 30.0  # headers read -> body read
    max_connections: int = 1024  # open connections per app; more are answered 503 and closed
    max_body_bytes: int = 16 * 1024 * 1024  # one request
    body_budget_bytes: int = 256 * 1024 * 1024  # all requests' buffered bodies on this node
    workers: int = 32  # worker threads per app, at most (and at most its maxConcurrency)


@dataclass(frozen=True)
class ClusterConfig:
    """What only cluster mode needs."""

    kubeconfig: str | None = None
    capacity_instances: int = 1000
    capacity_memory: str = "8Gi"
    labels: dict[str, str] = field(default_factory=dict)
    heartbeat_seconds: float = 2.0
    lease_seconds: int = 20
    # How long to wait for the API server at start before running from the journal.
    api_timeout_seconds: float = 5.0
    # The agent API's TLS certificate; neither: a self-signed one under the cache dir.
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None


@dataclass(frozen=True)
class AgentConfig:
    node: str
    address: str = "127.0.0.1"  # where HTTP apps are served
    api_address: str = "127.0.0.1"
    api_port: int = 0  # 0: a free port
    cache_dir: Path = Path(".cache/agent")
    cache_max_bytes: int | None = 2 * 1024**3
    http: FrontLimits = field(default_factory=FrontLimits)  # what HTTP clients are allowed
    # Processes serving HTTP apps beside the agent; 0 or 1: served in the agent's own process.
    # (The command line's --http-processes defaults to the usable CPUs.)
    http_processes: int = 0
    report_interval: float = 0.1
    port_retry_seconds: float = 5.0  # how often a taken spec.http.port is tried again
    # hostPath volumes: prefixes an administrator allows (none: every hostPath is refused),
    # and/or a file listing them (the wasmlet-host-paths ConfigMap's key, mounted).
    allowed_host_path_prefixes: tuple[str, ...] = ()
    host_path_prefixes_file: Path | None = None
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    # Guest output files (CRI format, kubelet's layout); None: only the in-memory rings.
    log_dir: Path | None = None
    log_max_bytes: int = 10 * 1024 * 1024  # rotate an instance's file past this size
    log_max_files: int = 5  # files kept per instance, the current one included
    log_gc_grace_seconds: float = 60.0  # a departed revision's log directory stays this long
    log_buffer_bytes: int = 128 * 1024  # each instance's in-memory ring (the agent API's)


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` (the --labels flag) as a dict; blanks are skipped."""
    labels: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        k, _, v = item.partition("=")
        labels[k.strip()] = v.strip()
    return labels
