"""wasmlet-operator: leader election, then kopf watching WasmApps, placements, nodes, leases."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import kopf
from aiohttp import web
from kubernetes import client
from prometheus_client import CollectorRegistry, start_http_server

from wasmlet import logfmt
from wasmlet.api.constants import SYSTEM_NAMESPACE
from wasmlet.clients import api_client as make_api_client
from wasmlet.version import wasmlet_version
from wasmlet_operator.grant_writer import Grants
from wasmlet_operator.handlers import build_registry, watch_heartbeats
from wasmlet_operator.kube import Kube
from wasmlet_operator.leader import LeaderElector
from wasmlet_operator.metrics import OperatorMetrics
from wasmlet_operator.state import ClusterState

# Threads making the operator's API writes at once (and connections kept for them).
API_THREADS = 32

log = logging.getLogger("wasmlet.operator")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="wasmlet-operator", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {wasmlet_version()}")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    p.add_argument(
        "--node-grace-seconds",
        type=float,
        default=20.0,
        help="a node whose Lease is older than this is not ready; its instances move",
    )
    p.add_argument("--resync-seconds", type=float, default=30.0)
    p.add_argument("--leader-election-namespace", default=SYSTEM_NAMESPACE)
    p.add_argument("--lease-seconds", type=int, default=15)
    p.add_argument("--identity", default=f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
    p.add_argument(
        "--liveness",
        default=None,
        help="kopf's own liveness endpoint, leader only, e.g. http://127.0.0.1:8081/healthz",
    )
    p.add_argument("--metrics-address", default="127.0.0.1", help="address of /metrics, /healthz")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="Prometheus /metrics; 0: off. Served by every replica from the start, leader or not",
    )
    p.add_argument(
        "--health-port",
        type=int,
        default=0,
        help="/healthz and /readyz on --metrics-address, every replica from the start; 0: off",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    return p.parse_args(argv)


async def serve_health(address: str, port: int) -> web.AppRunner:
    """/healthz and /readyz answered by the event loop itself, so a wedged loop fails the
    liveness probe. A standby replica is healthy and ready: it is doing its job (waiting)."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/healthz", ok)
    app.router.add_get("/readyz", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner


async def run(args: argparse.Namespace) -> int:
    api_client = make_api_client(args.kubeconfig, pool_size=API_THREADS)
    metrics = OperatorMetrics(CollectorRegistry())
    # Before the Lease: both replicas are scrape targets and pass their probes while one waits.
    if args.metrics_port:
        start_http_server(args.metrics_port, args.metrics_address, registry=metrics.registry)
    health = (
        await serve_health(args.metrics_address, args.health_port) if args.health_port else None
    )
    elector = LeaderElector(
        api_client, args.leader_election_namespace, "wasmlet-operator", args.identity,
        args.lease_seconds,
    )  # fmt: skip
    try:
        await elector.acquire()
        metrics.leader.set(1)
        return await act(args, api_client, metrics, elector)
    finally:
        metrics.leader.set(0)
        if health is not None:
            await health.cleanup()


async def act(
    args: argparse.Namespace,
    api_client: client.ApiClient,
    metrics: OperatorMetrics,
    elector: LeaderElector,
) -> int:
    """The leader's work: kopf's handlers, the heartbeat watch and holding the Lease."""
    # Every API write runs on the loop's default executor (kube.py); asyncio's default of
    # cpus + 4 threads queued a thousand new apps' writes behind each other.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(API_THREADS, thread_name_prefix="api")
    )
    state = ClusterState(node_grace_seconds=args.node_grace_seconds)
    kube = Kube(api_client, metrics)
    grants = Grants(kube, state)
    registry = build_registry(kube, state, args.resync_seconds, grants)

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's kubeconfig login reads it

    @kopf.on.login(registry=registry)
    def login(**kwargs: object) -> kopf.ConnectionInfo | None:
        if args.kubeconfig:
            return kopf.login_with_kubeconfig(**kwargs)  # type: ignore[arg-type]
        # In a pod: the Kubernetes client's in-cluster config, which dials
        # $KUBERNETES_SERVICE_HOST like client-go (kopf's own service-account login dials
        # kubernetes.default.svc, so it needs cluster DNS and exits quietly without it).
        return kopf.login_via_client(**kwargs)  # type: ignore[arg-type]

    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            kopf.operator(
                registry=registry,
                clusterwide=True,
                standalone=True,  # leader election above replaces kopf's peering
                stop_flag=stop,
                liveness_endpoint=args.liveness,
            )
        ),
        asyncio.create_task(watch_heartbeats(state, metrics=metrics, kube=kube)),
        asyncio.create_task(elector.hold()),
        asyncio.create_task(grants.run()),
    ]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    lost = tasks[2] in done
    if tasks[0] in done:
        error = None if tasks[0].cancelled() else tasks[0].exception()
        log.error("kopf stopped (%r); exiting so the pod restarts", error, exc_info=error)
    stop.set()
    for t in tasks[1:]:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return 1 if lost else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logfmt.setup(args.log_format, args.verbose)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
