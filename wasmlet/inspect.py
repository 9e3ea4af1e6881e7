"""`wasmlet status` and `wasmlet logs`: what runs where, and what instances print.

Both read the cluster in KUBECONFIG as the user: apps and placements from the API server,
logs from the agents' APIs (found through their WasmNode status), directly over TLS pinned to
the certificate each node publishes, with the user's own bearer token: the agent asks the API
server whether this user may `get wasmapps/log` in the namespace.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from kubernetes import client, config

from wasmlet import agent_client
from wasmlet.api.constants import APP_LABEL, GROUP, VERSION, WASMAPPS, WASMNODES, WASMPLACEMENTS


def _api() -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=os.environ.get("KUBECONFIG")
    )
    return api


def _table(rows: list[list[str]], out: TextIO) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def status(custom: Any, namespace: str | None, out: TextIO) -> int:
    if namespace:
        apps = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, WASMAPPS)
        placements = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, WASMPLACEMENTS)
    else:
        apps = custom.list_cluster_custom_object(GROUP, VERSION, WASMAPPS)
        placements = custom.list_cluster_custom_object(GROUP, VERSION, WASMPLACEMENTS)
    nodes = custom.list_cluster_custom_object(GROUP, VERSION, WASMNODES)
    out.write("APPS\n")
    rows = [["NAMESPACE", "NAME", "READY", "MODE", "CONDITION", "MODULE"]]
    for a in apps.get("items", []):
        st = a.get("status") or {}
        ready: dict[str, Any] = next(
            (c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        cond = f"{ready.get('status', '?')}/{ready.get('reason', '')}" if ready else "-"
        rows.append([
            a["metadata"]["namespace"], a["metadata"]["name"],
            st.get("ready", f"0/{a['spec'].get('replicas', 0)}"),
            a["spec"].get("mode", "command"), cond, st.get("module", "-"),
        ])  # fmt: skip
    _table(rows, out)
    out.write("\nNODES\n")
    rows = [["NAME", "ADDRESS", "INSTANCES", "CAPACITY", "WASMTIME"]]
    for n in nodes.get("items", []):
        st = n.get("status") or {}
        rows.append([
            n["metadata"]["name"], st.get("address", "-"), str(st.get("instances", 0)),
            str((st.get("capacity") or {}).get("instances", "-")),
            (st.get("nodeInfo") or {}).get("wasmtimeVersion", "-"),
        ])  # fmt: skip
    _table(rows, out)
    out.write("\nINSTANCES\n")
    rows = [["NAMESPACE", "APP", "NODE", "INSTANCE", "STATE", "RESTARTS", "REASON"]]
    for p in placements.get("items", []):
        for i in (p.get("status") or {}).get("instances") or []:
            rows.append([
                p["metadata"]["namespace"], p["spec"]["app"], p["spec"]["node"], i.get("name", ""),
                i.get("state", ""), str(i.get("restarts", 0)), i.get("reason", ""),
            ])  # fmt: skip
    _table(rows, out)
    return 0


def logs(custom: Any, namespace: str, app: str, tail: int, out: TextIO, token: str | None) -> int:
    placements = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, WASMPLACEMENTS, label_selector=f"{APP_LABEL}={app}"
    )
    nodes = sorted({p["spec"]["node"] for p in placements.get("items", [])})
    if not nodes:
        print(f"wasmlet: no instances of {namespace}/{app} are placed on any node", file=sys.stderr)
        return 1
    failed = 0
    for node in nodes:
        st = custom.get_cluster_custom_object(GROUP, VERSION, WASMNODES, node).get("status") or {}
        pem = st.get("servingCertificate")
        if not pem or not st.get("address"):
            print(f"wasmlet: node {node} has published no agent address or certificate yet "
                  "(status.servingCertificate)", file=sys.stderr)  # fmt: skip
            failed += 1
            continue
        url = f"{agent_client.agent_url(st)}/logs/{namespace}/{app}?tail={tail}"
        try:
            code, body = agent_client.get(url, token=token, pem=pem)
        except OSError as e:
            print(f"wasmlet: node {node}: cannot read logs from {url}: {e}", file=sys.stderr)
            failed += 1
            continue
        text = body.decode("utf-8", errors="replace")
        if code != 200:
            hint = ""
            if code in (401, 403):
                hint = (f" (needs a bearer token in your kubeconfig allowed `get wasmapps/log` "
                        f"in {namespace}: bind ClusterRole wasmlet-log-reader)")  # fmt: skip
            print(f"wasmlet: node {node}: {code} {text.strip()}{hint}", file=sys.stderr)
            failed += 1
            continue
        for line in text.splitlines():
            out.write(f"{node} {line}\n")
    return 1 if failed == len(nodes) else 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="wasmlet")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("status", help="apps, nodes and instances")
    s.add_argument("-n", "--namespace", default=None)
    lg = sub.add_parser("logs", help="instance logs of an app, from every node running it")
    lg.add_argument("app")
    lg.add_argument("-n", "--namespace", default="default")
    lg.add_argument("--tail", type=int, default=100)
    args = p.parse_args(argv)
    with _api() as api:
        custom = client.CustomObjectsApi(api)
        if args.command == "status":
            return status(custom, args.namespace, sys.stdout)
        token = agent_client.bearer_of(api)
        return logs(custom, args.namespace, args.app, args.tail, sys.stdout, token)
