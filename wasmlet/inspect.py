"""`wasmlet status` and `wasmlet logs`: what runs where, and what instances print.

Both read the cluster as the user, with kubectl's habits: `--kubeconfig` (else KUBECONFIG, else
~/.kube/config), `--context`, the context's namespace unless `-n` or `-A` says otherwise.
Apps and placements come from the API server; logs from the agents' APIs (found through their
WasmNode status), directly over TLS pinned to the certificate each node publishes, with the
user's own bearer token: the agent asks the API server whether this user may
`get wasmapps/log` in the namespace. Also installed as the kubectl plugin `kubectl-wasmlet`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from dataclasses import dataclass
from typing import Any, TextIO

import yaml
from kubernetes import client, config

from wasmlet import agent_client
from wasmlet.api.constants import APP_LABEL, GROUP, VERSION, WASMAPPS, WASMNODES, WASMPLACEMENTS
from wasmlet.version import wasmlet_version

OUTPUTS = ("wide", "json", "yaml")


@dataclass(frozen=True)
class Target:
    """Which cluster (kubeconfig file and context) and which namespace (None: all)."""

    kubeconfig: str | None
    context: str | None
    namespace: str | None


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace the kubeconfig context sets, as kubectl uses it; `default` if none."""
    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts if c["name"] == context), None)
        if chosen is None:
            names = ", ".join(c["name"] for c in contexts)
            raise SystemExit(f"wasmlet: context {context!r} is not in the kubeconfig ({names})")
    return str((chosen or {}).get("context", {}).get("namespace") or "default")


def resolve(args: argparse.Namespace) -> Target:
    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG") or None
    if getattr(args, "all_namespaces", False):
        return Target(kubeconfig, args.context, None)
    namespace = args.namespace or context_namespace(kubeconfig, args.context)
    return Target(kubeconfig, args.context, namespace)


def _api(target: Target) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=target.kubeconfig, context=target.context
    )
    return api


def _table(rows: list[list[str]], out: TextIO) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _ready(node_status: dict[str, Any]) -> str:
    """The Ready condition's status: True, Unknown (heartbeat stale), False, or - if none."""
    for c in node_status.get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status", "-"))
    return "-"


def status(custom: Any, namespace: str | None, out: TextIO, output: str | None = None) -> int:
    """Apps, nodes and instances in `namespace` (None: every namespace); `output` is one of
    OUTPUTS (json and yaml print the objects as a kubectl List)."""
    if namespace:
        apps = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, WASMAPPS)
        placements = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, WASMPLACEMENTS)
    else:
        apps = custom.list_cluster_custom_object(GROUP, VERSION, WASMAPPS)
        placements = custom.list_cluster_custom_object(GROUP, VERSION, WASMPLACEMENTS)
    nodes = custom.list_cluster_custom_object(GROUP, VERSION, WASMNODES)
    if output in ("json", "yaml"):
        items = [*apps.get("items", []), *nodes.get("items", []), *placements.get("items", [])]
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        out.write(json.dumps(doc, indent=4) + "\n" if output == "json" else yaml.safe_dump(doc))
        return 0
    wide = output == "wide"
    out.write("APPS\n")
    # MODULE is what the ready instances run; TARGET what the spec asks for (they differ
    # during a rollout, and stay apart while one is stuck: see PROGRESSING).
    rows = [["NAMESPACE", "NAME", "READY", "MODE", "CONDITION", "MODULE"]]
    if wide:
        rows[0] += ["TARGET", "PROGRESSING", "UPDATED", "MESSAGE"]
    for a in apps.get("items", []):
        st = a.get("status") or {}
        conds = {c.get("type"): c for c in st.get("conditions") or []}
        ready: dict[str, Any] = conds.get("Ready") or {}
        cond = f"{ready.get('status', '?')}/{ready.get('reason', '')}" if ready else "-"
        rows.append([
            a["metadata"]["namespace"], a["metadata"]["name"],
            st.get("ready", f"0/{a['spec'].get('replicas', 0)}"),
            a["spec"].get("mode", "command"), cond, st.get("module") or "-",
        ])  # fmt: skip
        if wide:
            progressing = conds.get("Progressing") or {}
            rows[-1] += [
                st.get("targetModule") or "-",
                f"{progressing.get('status')}/{progressing.get('reason', '')}"
                if progressing
                else "-",
                str(st.get("updatedReplicas", 0)),
                ready.get("message", "") or "-",
            ]
    _table(rows, out)
    out.write("\nNODES\n")
    rows = [["NAME", "READY", "ADDRESS", "INSTANCES", "CAPACITY", "WASMTIME"]]
    if wide:
        rows[0] += ["AGENT-PORT", "LABELS"]
    for n in nodes.get("items", []):
        st = n.get("status") or {}
        rows.append([
            n["metadata"]["name"], _ready(st), st.get("address", "-"), str(st.get("instances", 0)),
            str((st.get("capacity") or {}).get("instances", "-")),
            (st.get("nodeInfo") or {}).get("wasmtimeVersion", "-"),
        ])  # fmt: skip
        if wide:
            labels = n["metadata"].get("labels") or {}
            rows[-1] += [
                str(st.get("agentPort", "-")),
                ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-",
            ]
    _table(rows, out)
    out.write("\nINSTANCES\n")
    rows = [["NAMESPACE", "APP", "NODE", "INSTANCE", "STATE", "RESTARTS", "REASON"]]
    if wide:
        rows[0] += ["REVISION", "EXIT", "STARTED"]
    for p in placements.get("items", []):
        for i in (p.get("status") or {}).get("instances") or []:
            rows.append([
                p["metadata"]["namespace"], p["spec"]["app"], p["spec"]["node"], i.get("name", ""),
                i.get("state", ""), str(i.get("restarts", 0)), i.get("reason", ""),
            ])  # fmt: skip
            if wide:
                rows[-1] += [
                    i.get("revision", "-"),
                    str(i.get("exitCode", "-")),
                    i.get("startedAt", "-"),
                ]
    _table(rows, out)
    return 0


def logs(
    custom: Any,
    namespace: str,
    app: str,
    tail: int,
    out: TextIO,
    token: str | None,
    instance: str | None = None,
) -> int:
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
        query = urllib.parse.urlencode(
            {"tail": tail, **({"instance": instance} if instance else {})}
        )
        url = f"{agent_client.agent_url(st)}/logs/{namespace}/{app}?{query}"
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


def build_parser(prog: str = "wasmlet") -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: KUBECONFIG)")
    common.add_argument("--context", default=None, help="kubeconfig context (default: current)")
    common.add_argument(
        "-n", "--namespace", default=None, help="namespace (default: the context's namespace)"
    )
    p = argparse.ArgumentParser(prog=prog, description="wasmlet apps, nodes and instance logs")
    p.add_argument("--version", action="version", version=f"%(prog)s {wasmlet_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("status", parents=[common], help="apps, nodes and instances")
    s.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    s.add_argument("-o", "--output", choices=OUTPUTS, default=None, help="wide, json or yaml")
    lg = sub.add_parser(
        "logs", parents=[common], help="instance logs of an app, from every node running it"
    )
    lg.add_argument("app")
    lg.add_argument("--tail", type=int, default=100, help="lines per instance (default 100)")
    lg.add_argument("--instance", default=None, help="only this instance (see wasmlet status)")
    return p


def main(argv: list[str], prog: str = "wasmlet") -> int:
    args = build_parser(prog).parse_args(argv)
    target = resolve(args)
    with _api(target) as api:
        custom = client.CustomObjectsApi(api)
        if args.command == "status":
            return status(custom, target.namespace, sys.stdout, args.output)
        assert target.namespace is not None
        token = agent_client.bearer_of(api)
        return logs(custom, target.namespace, args.app, args.tail, sys.stdout, token,
                    args.instance)  # fmt: skip
