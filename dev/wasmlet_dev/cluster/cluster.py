"""A real control plane (etcd, kube-apiserver, kube-controller-manager) on loopback ports."""

from __future__ import annotations

import fcntl
import re
import secrets
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from wasmlet_dev.certs import VALIDITY
from wasmlet_dev.cluster.binaries import KubeBinaries, ensure_binaries
from wasmlet_dev.cluster.identities import ClusterEndpoint, write_kubeconfig, write_kubeconfig_for
from wasmlet_dev.cluster.kubectl import Kubectl, apply_files, manifest_files, wait_established
from wasmlet_dev.cluster.pki import ClusterPKI, write_cluster_pki
from wasmlet_dev.ports import free_port
from wasmlet_dev.processes import ManagedProcess, ProcessError
from wasmlet_dev.waits import WaitTimeout, wait_until

HOST = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/24"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: first address of SERVICE_CIDR
ADMIN_USER = "admin"
# Tokens for components live as long as the cluster can (its certificates expire then too);
# every start wipes the cluster anyway.
DEV_TOKEN_SECONDS = int(VALIDITY.total_seconds())
# What namespace deletion and ownerReference garbage collection need, plus the default
# ServiceAccount in every namespace as on any real cluster, and the aggregation of deploy/'s
# tenant roles into admin/edit/view. No scheduler, no pods.
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "clusterrole-aggregation-controller",
)


class ClusterStartError(RuntimeError):
    """The control plane did not come up; the message says what failed and how to fix it."""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int

    @classmethod
    def pick(cls, apiserver: int | None = None) -> Ports:
        chosen: list[int] = [apiserver] if apiserver else []
        while len(chosen) < 4:  # the kernel may hand out a just-released port again
            port = free_port()
            if port not in chosen:
                chosen.append(port)
        api, etcd_client, etcd_peer, controller_manager = chosen
        return cls(etcd_client, etcd_peer, api, controller_manager)


def etcd_args(binary: Path, data_dir: Path, ports: Ports) -> list[str]:
    client = f"http://{HOST}:{ports.etcd_client}"
    peer = f"http://{HOST}:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=default",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync",  # throwaway data: speed over durability
        "--log-level=warn",
    ]


def apiserver_args(
    binary: Path, pki: ClusterPKI, token_file: Path, ports: Ports, address: str = HOST
) -> list[str]:
    server = f"https://{address}:{ports.apiserver}"
    # Endpoints may not hold a loopback address: on loopback nothing in-cluster calls the
    # apiserver; on a node's address (make up-node) the `kubernetes` Service gets endpoints.
    reconciler = "none" if address.startswith("127.") else "lease"
    return [
        str(binary),
        f"--etcd-servers=http://{HOST}:{ports.etcd_client}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--token-auth-file={token_file}",
        "--authorization-mode=RBAC",
        # Bound ServiceAccount tokens (TokenRequest), signed by our key, issued as the server.
        f"--service-account-issuer={server}",
        f"--service-account-key-file={pki.sa_public_key}",
        f"--service-account-signing-key-file={pki.sa_private_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--endpoint-reconciler-type={reconciler}",
        # `kubectl logs` dials the kubelet at its InternalIP, not its (unresolvable) name.
        "--kubelet-preferred-address-types=InternalIP",
        "--profiling=false",
    ]


def controller_manager_args(
    binary: Path,
    workdir: Path,
    pki: ClusterPKI,
    kubeconfig: Path,
    ports: Ports,
    controllers: Sequence[str] = CONTROLLERS,
) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        # The apiserver has no front proxy, so there is no request-header CA to look up.
        "--authentication-skip-lookup=true",
        f"--controllers={','.join(controllers)}",
        # Each controller acts as its own ServiceAccount with its bootstrap RBAC role.
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        f"--bind-address={HOST}",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={workdir / 'controller-manager-certs'}",
        f"--root-ca-file={pki.ca.cert}",
        "--profiling=false",
    ]


def _get(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> bool:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _port_in_use(log_text: str) -> int | None:
    m = re.search(r":(\d+): bind: address already in use", log_text)
    return int(m.group(1)) if m else None


class LocalCluster:
    """A fresh control plane in `workdir`; use as a context manager or call start()/stop().

    `preinstall` directories of CRDs are applied before the controller manager starts, so its
    garbage collector watches their kinds from the start (it rediscovers only every 30 s).
    `address` is where kube-apiserver listens and what it advertises (a real node's pods need
    a non-loopback one); `controllers` are the controller manager's."""

    def __init__(
        self,
        workdir: Path,
        *,
        binaries: KubeBinaries | None = None,
        apiserver_port: int | None = None,
        preinstall: Sequence[Path] = (),
        start_timeout: float = 90.0,
        address: str = HOST,
        controllers: Sequence[str] = CONTROLLERS,
    ) -> None:
        self.address = address
        self.controllers = tuple(controllers)
        self.workdir = workdir.resolve()
        self.log_dir = self.workdir / "logs"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self._binaries = binaries
        self._apiserver_port = apiserver_port
        self._preinstall = list(preinstall)
        self._start_timeout = start_timeout
        self._lock: IO[bytes] | None = None
        self.processes: list[ManagedProcess] = []
        self.ports: Ports | None = None
        self.admin_token = ""
        self.ca_data = b""
        self.startup_seconds = 0.0

    @property
    def binaries(self) -> KubeBinaries:
        if self._binaries is None:
            self._binaries = ensure_binaries()
        return self._binaries

    @property
    def server(self) -> str:
        if self.ports is None:
            raise RuntimeError("the cluster is not started")
        return f"https://{self.address}:{self.ports.apiserver}"

    @property
    def pids(self) -> list[int]:
        """Pids of every process this cluster started (they stay listed after stop())."""
        return [p.pid for p in self.processes]

    @property
    def endpoint(self) -> ClusterEndpoint:
        return ClusterEndpoint(self.server, self.ca_data)

    def kubectl(self) -> Kubectl:
        """kubectl as the admin (identity `admin` in group system:masters)."""
        return Kubectl(self.binaries.kubectl, self.kubeconfig)

    def kubeconfig_for(
        self,
        service_account: str,
        namespace: str = "wasmlet-system",
        seconds: int = DEV_TOKEN_SECONDS,
    ) -> Path:
        """Writes workdir/identities/<namespace>.<service_account>.kubeconfig holding a fresh
        TokenRequest token: how components started next to the cluster get their identity."""
        path = self.workdir / "identities" / f"{namespace}.{service_account}.kubeconfig"
        return write_kubeconfig_for(
            path, self.kubeconfig, self.endpoint, namespace, service_account, seconds
        )

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        """Starts etcd, kube-apiserver and kube-controller-manager and waits until they are
        ready. On any failure stops what it started and raises ClusterStartError."""
        binaries = self.binaries  # may build: not part of the startup time
        began = time.monotonic()
        self._lock_workdir()
        try:
            self._start(binaries)
        except BaseException as e:
            self.stop()
            if isinstance(e, ProcessError | WaitTimeout):
                raise ClusterStartError(self._explain(e)) from e
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start(self, binaries: KubeBinaries) -> None:
        for stale in ("etcd-data", "pki", "logs", "identities", "controller-manager-certs"):
            shutil.rmtree(self.workdir / stale, ignore_errors=True)
        self.ports = ports = Ports.pick(self._apiserver_port)
        extra = [] if self.address == HOST else [self.address]
        pki = write_cluster_pki(self.workdir / "pki", SERVICE_IP, extra)
        self.ca_data = pki.ca.cert.read_bytes()
        self.admin_token = secrets.token_urlsafe(32)
        token_file = self.workdir / "pki" / "tokens.csv"
        token_file.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        token_file.chmod(0o600)

        etcd_data = self.workdir / "etcd-data"
        etcd_data.mkdir(mode=0o700)
        etcd = self._spawn("etcd", etcd_args(binaries.etcd, etcd_data, ports))
        wait_until(
            lambda: _get(f"http://{HOST}:{ports.etcd_client}/health"),
            what=f"etcd to serve on {HOST}:{ports.etcd_client}",
            timeout=self._start_timeout,
            watch=[etcd],
        )

        apiserver = self._spawn(
            "kube-apiserver",
            apiserver_args(binaries.kube_apiserver, pki, token_file, ports, self.address),
        )
        tls = ssl.create_default_context(cadata=self.ca_data.decode())
        wait_until(
            lambda: _get(f"{self.server}/readyz", tls, self.admin_token),
            what=f"kube-apiserver to be ready on {self.server}",
            timeout=self._start_timeout,
            watch=[etcd, apiserver],
        )
        write_kubeconfig(
            self.kubeconfig, self.server, self.ca_data, self.admin_token, name="wasmlet-dev"
        )

        kubectl = self.kubectl()
        for directory in self._preinstall:
            wait_established(kubectl, apply_files(kubectl, manifest_files(directory)))

        kcm_kubeconfig = write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            self.server,
            self.ca_data,
            client_cert=pki.controller_manager.cert,
            client_key=pki.controller_manager.key,
            name="controller-manager",
        )
        kcm = self._spawn(
            "kube-controller-manager",
            controller_manager_args(
                binaries.kube_controller_manager,
                self.workdir,
                pki,
                kcm_kubeconfig,
                ports,
                self.controllers,
            ),
        )
        # It serves a self-signed cert from its cert-dir; /healthz needs no credentials.
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        wait_until(
            lambda: _get(f"https://{HOST}:{ports.controller_manager}/healthz", insecure),
            what=f"kube-controller-manager to be healthy on {HOST}:{ports.controller_manager}",
            timeout=self._start_timeout,
            watch=[etcd, apiserver, kcm],
        )

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess.start(name, argv, self.log_dir / f"{name}.log", cwd=self.workdir)
        self.processes.append(proc)
        return proc

    def _explain(self, error: ProcessError | WaitTimeout) -> str:
        text = str(error)
        port = _port_in_use(text)
        if port is not None:
            fix = (
                f"port {HOST}:{port} is already in use by another process: stop that process, "
                f"or pick another port (leave the port unset to get a free one)"
            )
        elif "timed out" in text:
            fix = "the machine may be overloaded; see the logs above, or raise start_timeout"
        else:
            fix = f"see the log lines above; all logs are in {self.log_dir}"
        return f"the local control plane failed to start: {text}\nhow to fix: {fix}"

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again with the same flags (for resilience tests:
        clients must reconnect and converge)."""
        index = next(i for i, p in enumerate(self.processes) if p.name == "kube-apiserver")
        old = self.processes[index]
        argv = old.argv
        old.stop()
        new = ManagedProcess.start("kube-apiserver", argv, old.log_path, cwd=self.workdir)
        self.processes[index] = new
        assert self.ca_data is not None
        tls = ssl.create_default_context(cadata=self.ca_data.decode())
        wait_until(
            lambda: _get(f"{self.server}/readyz", tls, self.admin_token),
            what=f"kube-apiserver to be ready again on {self.server}",
            timeout=self._start_timeout,
            watch=[new],
        )

    def check_alive(self) -> None:
        """Raises ClusterStartError naming the first process that has exited."""
        for proc in self.processes:
            if not proc.alive():
                raise ClusterStartError(f"the local control plane broke: {proc.describe_exit()}")

    def stop(self) -> None:
        """Stops every process this cluster started (newest first) by its pid."""
        errors: list[BaseException] = []
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except BaseException as e:  # keep stopping the rest
                errors.append(e)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if errors:
            raise errors[0]

    def _lock_workdir(self) -> None:
        # One cluster per workdir: a second one would wipe the first one's etcd data.
        self.workdir.mkdir(parents=True, exist_ok=True)
        lock = (self.workdir / ".lock").open("wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ClusterStartError(
                f"another local cluster is running in {self.workdir}; stop it (Ctrl-C in its "
                f"terminal) or use another workdir"
            ) from None
        self._lock = lock
