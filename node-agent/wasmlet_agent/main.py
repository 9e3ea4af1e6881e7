"""wasmlet-agent: `run FILE...` (standalone) or `node` (a cluster node under the operator)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from pathlib import Path

from wasmlet import logfmt
from wasmlet.version import wasmlet_version
from wasmlet_agent.cache import unwritable_reason
from wasmlet_agent.config import AgentConfig, ClusterConfig, FrontLimits, parse_labels

DEFAULT_LOG_DIR = "/var/log/wasmlet/pods"


def _default_cache(command: str) -> Path:
    """`node` and `run` keep apart (module cache, instance directories; the journal is the
    node's alone), so `wasmlet run` on an edge node cannot disturb the node agent."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wasmlet" / ("agent" if command == "node" else "run")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="wasmlet-agent", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {wasmlet_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("run", "run WasmApp manifests from files, no cluster"),
        ("node", "join the cluster in KUBECONFIG as a wasmlet node"),
    ):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--node-name", default=socket.gethostname())
        s.add_argument("--address", default="127.0.0.1", help="address HTTP apps listen on")
        s.add_argument("--api-address", default=None, help="default: --address")
        s.add_argument("--api-port", type=int, default=0, help="health/metrics/logs port")
        s.add_argument("--cache-dir", type=Path, default=_default_cache(name))
        s.add_argument("--cache-max-bytes", type=int, default=2 * 1024**3)
        s.add_argument(
            "--http-workers",
            type=int,
            default=FrontLimits.workers,
            help="threads running HTTP instances, per app (at most its maxConcurrency)",
        )
        s.add_argument(
            "--http-processes",
            type=int,
            default=len(os.sched_getaffinity(0)),
            help="processes serving HTTP apps, each with its own event loop and wasmtime "
            "engine (default: the usable CPUs); 0 or 1 serves them in the agent's process",
        )
        s.add_argument(
            "--allowed-host-path-prefix",
            action="append",
            default=[],
            metavar="DIR",
            help="a directory under which spec.volumes[].hostPath may point (repeatable; "
            "default none: every hostPath is refused)",
        )
        s.add_argument(
            "--allowed-host-path-prefixes-file",
            type=Path,
            default=None,
            help="a file listing allowed prefixes one per line (ConfigMap "
            "wasmlet-system/wasmlet-host-paths, key allowedPrefixes, mounted); re-read on use",
        )
        s.add_argument(
            "--log-dir",
            default=DEFAULT_LOG_DIR if name == "node" else "",
            help="guest output files, one per instance in CRI format under "
            "<namespace>_<app>_<revision>/<instance>/0.log (node default: %(default)s; "
            "run: none, the output is printed); '' writes none",
        )
        s.add_argument(
            "--log-max-bytes",
            type=int,
            default=AgentConfig.log_max_bytes,
            help="rotate an instance's log file before it grows past this size",
        )
        s.add_argument(
            "--log-max-files",
            type=int,
            default=AgentConfig.log_max_files,
            help="log files kept per instance, the current one included (at least 2)",
        )
        s.add_argument(
            "--log-buffer-bytes",
            type=int,
            default=AgentConfig.log_buffer_bytes,
            help="each instance's in-memory log ring, served by the agent API",
        )
        s.add_argument("-v", "--verbose", action="store_true")
        s.add_argument("--log-format", choices=("text", "json"), default="text")
        if name == "run":
            s.add_argument("files", nargs="+", type=Path, help="manifest files (YAML)")
        else:
            s.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
            s.add_argument("--capacity-instances", type=int, default=1000)
            s.add_argument("--capacity-memory", default="8Gi")
            s.add_argument("--labels", default="", help="node labels, k=v,k2=v2")
            s.add_argument("--heartbeat-seconds", type=float, default=2.0)
            s.add_argument("--lease-seconds", type=int, default=20)
            s.add_argument(
                "--api-timeout",
                type=float,
                default=ClusterConfig.api_timeout_seconds,
                help="seconds to wait for the API server at start before running from the "
                "node's journal (edge autonomy)",
            )
            s.add_argument(
                "--tls-cert-file",
                type=Path,
                default=None,
                help="the agent API's serving certificate (PEM); default: a self-signed one "
                "under --cache-dir, published in the WasmNode's status.servingCertificate",
            )
            s.add_argument(
                "--tls-private-key-file",
                type=Path,
                default=None,
                help="the key of --tls-cert-file (PEM)",
            )
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> AgentConfig:
    """The one AgentConfig for this process; nothing else reads the argparse namespace."""
    cluster = ClusterConfig()
    if args.command == "node":
        cluster = ClusterConfig(
            kubeconfig=args.kubeconfig,
            capacity_instances=args.capacity_instances,
            capacity_memory=args.capacity_memory,
            labels=parse_labels(args.labels),
            heartbeat_seconds=args.heartbeat_seconds,
            lease_seconds=args.lease_seconds,
            api_timeout_seconds=args.api_timeout,
            tls_cert_file=args.tls_cert_file,
            tls_private_key_file=args.tls_private_key_file,
        )
    return AgentConfig(
        node=args.node_name,
        address=args.address,
        api_address=args.api_address or args.address,
        api_port=args.api_port,
        cache_dir=args.cache_dir,
        cache_max_bytes=args.cache_max_bytes,
        http=FrontLimits(workers=args.http_workers),
        http_processes=args.http_processes,
        allowed_host_path_prefixes=tuple(args.allowed_host_path_prefix),
        host_path_prefixes_file=args.allowed_host_path_prefixes_file,
        cluster=cluster,
        log_dir=Path(args.log_dir) if args.log_dir else None,
        log_max_bytes=args.log_max_bytes,
        log_max_files=args.log_max_files,
        log_buffer_bytes=args.log_buffer_bytes,
    )


def config_problem(args: argparse.Namespace) -> str | None:
    """A flag value the agent cannot run with, named with the fix (checked before start)."""
    if args.log_max_bytes < 4096:
        return f"--log-max-bytes={args.log_max_bytes}: must be at least 4096"
    if args.log_max_files < 2:
        return (
            f"--log-max-files={args.log_max_files}: must be at least 2 (the current file "
            "and one rotated, as the kubelet's containerLogMaxFiles)"
        )
    if args.log_buffer_bytes < 1024:
        return f"--log-buffer-bytes={args.log_buffer_bytes}: must be at least 1024"
    return None


IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def credentials_problem(
    kubeconfig: str | None, environ: dict[str, str] | os._Environ[str], token: Path
) -> str | None:
    """Why `node` has no identity to reach the API server with, named with the fix."""
    if kubeconfig:
        if not os.path.isfile(kubeconfig):
            return f"--kubeconfig (or KUBECONFIG) {kubeconfig}: no such file"
        return None
    if not environ.get("KUBERNETES_SERVICE_HOST"):
        return (
            "no --kubeconfig (or KUBECONFIG) and not in a pod (KUBERNETES_SERVICE_HOST is "
            "unset): pass --kubeconfig, or run the agent from deploy/'s DaemonSet"
        )
    if not token.is_file():
        return (
            f"no ServiceAccount token at {token}: the agent's pod must mount its token "
            "(automountServiceAccountToken: true on the pod or its ServiceAccount "
            "wasmlet-agent, as deploy/ leaves it)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logfmt.setup(args.log_format, args.verbose)
    config = config_from(args)
    reason = config_problem(args) or unwritable_reason(config.cache_dir)
    if reason is None and args.command == "node":
        reason = credentials_problem(args.kubeconfig, os.environ, IN_CLUSTER_TOKEN)
    if reason is None and config.log_dir is not None:
        reason = unwritable_reason(config.log_dir, "log directory", "--log-dir")
    if reason is not None:
        print(f"wasmlet-agent: cannot start: {reason}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            from wasmlet_agent.standalone import run

            return asyncio.run(run(args.files, config))
        from wasmlet_agent.cluster.node import run_node

        return asyncio.run(run_node(config))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
