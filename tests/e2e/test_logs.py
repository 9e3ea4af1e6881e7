"""Guest output where log shippers look, and `wasmlet logs` as a user runs it (issue 11 item 5).

A command-mode guest prints a numbered line every 100 ms; the test reads its CRI file on the
node (the agent's --log-dir), asks the CLI for --tail, --since, --since-time and -f, and checks
every answer against the file: the file and the agent's ring share each line's time."""

from __future__ import annotations

import os
import queue
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from tests.fixtures.stack import Stack, wasmapp
from tests.fixtures.tenants import TENANT_SA, Tenant
from wasmlet.api.logs import format_timestamp, parse_timestamp
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e

CRI_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) stdout F (tick \d+)$")


def wasmlet_argv(kubeconfig: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "wasmlet.cli", *args, "--kubeconfig", str(kubeconfig)]


def wasmlet(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(wasmlet_argv(kubeconfig, *args), capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def read_lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)


def file_lines(path: Path) -> list[tuple[int, str]]:
    """(time ns, text) of every complete line of a CRI log file, checking each line's form."""
    out = []
    for raw in path.read_text().splitlines(keepends=True):
        if not raw.endswith("\n"):
            break  # a write under way
        m = CRI_LINE.match(raw.rstrip("\n"))
        assert m, f"not a CRI log line: {raw!r}"
        out.append((parse_timestamp(m.group(1)), m.group(2)))
    return out


def stamped(stdout: str) -> list[tuple[int, str]]:
    """`--timestamps` output as (time ns, text)."""
    out = []
    for line in stdout.splitlines():
        stamp, _, text = line.partition(" ")
        out.append((parse_timestamp(stamp), text))
    return out


def contiguous_in(block: list[Any], whole: list[Any]) -> int:
    """Where `block` starts in `whole` as a run of consecutive items (AssertionError if not)."""
    for i in range(len(whole) - len(block) + 1):
        if whole[i : i + len(block)] == block:
            return i
    raise AssertionError(f"{block} is not a run of the file's lines")


def tick(text: str) -> int:
    return int(text.removeprefix("tick "))


def bind(stack: Stack, ns: str, kind: str, name: str, role: str) -> None:
    """Bind ClusterRole `role` to the tenant's ServiceAccount (RoleBinding in `ns` or
    ClusterRoleBinding)."""
    meta: dict[str, str] = {"name": name} | ({"namespace": ns} if kind == "RoleBinding" else {})
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": TENANT_SA, "namespace": ns}],
    }  # fmt: skip
    stack.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(binding))


def test_guest_output_in_cri_files_and_wasmlet_logs(
    stack: Stack, tenants: Callable[[str], Tenant]
) -> None:
    tenant = tenants("logs")
    ns, admin = tenant.namespace, Path(stack.kube.kubeconfig)
    stack.apply(ns, wasmapp("printer", stack.modules["long"], replicas=1))

    def running() -> tuple[str, dict[str, Any]] | None:
        for p in stack.placements(ns, "printer"):
            for i in (p.get("status") or {}).get("instances") or []:
                if i.get("state") == "Running":
                    return str(p["spec"]["node"]), i
        return None

    node, inst = wait_until(running, "printer running")
    # The kubelet's /var/log/pods layout: <namespace>_<app>_<revision>/<instance>/0.log.
    root = stack.agents[node].cache_dir / "pods"
    app_dir = root / f"{ns}_printer_{inst['revision']}"
    path = app_dir / inst["name"] / "0.log"
    wait_until(lambda: path.exists() and len(file_lines(path)) >= 30, f"30 lines in {path}")
    # Private: other tenants' guests and users on the node read none of it.
    for d in (root, app_dir, path.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == os.geteuid()
    ticks = [tick(text) for _, text in file_lines(path)]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # none lost, none doubled

    # --tail: the newest N lines, as the file has them.
    written_before = len(file_lines(path))
    out = wasmlet(admin, "logs", "printer", "-n", ns, "--tail", "3", "--timestamps")
    assert out.returncode == 0, out.stderr
    got = stamped(out.stdout)
    assert len(got) == 3
    # The newest: it ends at or after the last line written before the call.
    assert contiguous_in(got, file_lines(path)) + 3 >= written_before
    plain = wasmlet(admin, "logs", "printer", "-n", ns, "--tail", "2")
    assert plain.returncode == 0, plain.stderr
    assert re.fullmatch(r"tick \d+\ntick \d+\n", plain.stdout), plain.stdout

    # --since-time: exactly the lines from that time on (the file's, in order).
    lines = file_lines(path)
    since_ns = lines[-20][0]
    out = wasmlet(admin, "logs", "printer", "-n", ns, "--since-time", format_timestamp(since_ns),
                  "--tail=-1", "--timestamps")  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = stamped(out.stdout)
    newer = [x for x in file_lines(path) if x[0] >= since_ns]
    assert got and got == newer[: len(got)] and len(got) >= 20

    # --since: a duration back from the agent's now (taken during the call).
    t0 = time.time_ns()
    out = wasmlet(admin, "logs", "printer", "-n", ns, "--since=2s", "--tail=-1", "--timestamps")
    t1 = time.time_ns()
    assert out.returncode == 0, out.stderr
    got = stamped(out.stdout)
    lines = file_lines(path)
    start = contiguous_in(got, lines)
    assert got[0][0] >= t0 - 2 * 10**9  # nothing older than 2 s before the call
    assert start > 0 and lines[start - 1][0] < t1 - 2 * 10**9  # and nothing newer left out
    assert 5 <= len(got) <= 40  # ~20 lines in 2 s, on a loaded machine fewer or a few more

    # -f: a line printed after the follower started arrives while it runs.
    last_before = tick(file_lines(path)[-1][1])
    started = time.time_ns()
    follower = subprocess.Popen(
        wasmlet_argv(admin, "logs", "printer", "-n", ns, "-f", "--tail=0", "--timestamps"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert follower.stdout is not None and follower.stderr is not None
    streamed: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_lines, args=(follower.stdout, streamed), daemon=True).start()
    seen: list[str] = []
    try:

        def two_lines() -> bool:
            while not streamed.empty():
                seen.append(streamed.get())
            assert follower.poll() is None, follower.stderr.read()  # type: ignore[union-attr]
            return len(seen) >= 2

        wait_until(two_lines, "2 lines from wasmlet logs -f", timeout=20, interval=0.1,
                   retry_on=())  # fmt: skip
    finally:
        follower.terminate()  # by pid, as a user's Ctrl-C ends it
        follower.wait(timeout=10)
    got = stamped("".join(seen))
    assert all(t >= started for t, _ in got) and tick(got[0][1]) > last_before
    assert tick(got[1][1]) == tick(got[0][1]) + 1

    # RBAC: a tenant without the log-reader role is refused, with the fix in the message.
    refused = wasmlet(tenant.kubeconfig, "logs", "printer", "-n", ns)
    assert refused.returncode == 1 and not refused.stdout
    assert "wasmlet-log-reader" in refused.stderr, refused.stderr
    # Even if it may find the nodes, the agent asks the API server and says no: no
    # `get wasmapps/log` in the namespace.
    viewer = f"{ns}-node-viewer"
    try:
        bind(stack, ns, "ClusterRoleBinding", viewer, "wasmlet-node-viewer")
        stack.kube.kubectl("create", "role", "placements", "-n", ns, "--verb=get,list",
                           "--resource=wasmplacements.wasmlet.dev")  # fmt: skip
        stack.kube.kubectl("create", "rolebinding", "placements", "-n", ns, "--role=placements",
                           f"--serviceaccount={ns}:{TENANT_SA}")  # fmt: skip
        refused = wasmlet(tenant.kubeconfig, "logs", "printer", "-n", ns)
        assert refused.returncode == 1 and not refused.stdout
        assert f"node {node}: 403" in refused.stderr, refused.stderr
        assert "wasmlet-log-reader" in refused.stderr
        # deploy/'s roles as the README says to bind them: now it reads its app's logs. (A
        # fresh token: the agent remembers the refusal of the old one for a few seconds.)
        bind(stack, ns, "RoleBinding", "logs", "wasmlet-log-reader")
        allowed = wasmlet(stack.kube.kubeconfig_for(TENANT_SA, ns), "logs", "printer", "-n", ns)
        assert allowed.returncode == 0, allowed.stderr
        assert re.match(r"tick \d+\n", allowed.stdout), allowed.stdout
    finally:
        stack.kube.kubectl("delete", "clusterrolebinding", viewer, "--ignore-not-found",
                           check=False)  # fmt: skip
