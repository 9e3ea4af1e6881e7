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
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, TextIO

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from wasmlet import agent_client
from wasmlet.api.constants import APP_LABEL, GROUP, VERSION, WASMAPPS, WASMNODES, WASMPLACEMENTS
from wasmlet.api.logs import parse_duration, parse_timestamp, parse_wire_line, render_line
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


@dataclass(frozen=True)
class LogOptions:
    """`wasmlet logs` flags, as kubectl logs spells them."""

    tail: int = 100
    instance: str | None = None
    follow: bool = False
    since_seconds: float | None = None
    since_time: str | None = None
    timestamps: bool = False
    prefix: bool = False

    def query(self) -> dict[str, str]:
        """What every agent is asked: always with prefix and times, so lines from several
        instances and nodes can be merged and labelled here."""
        q = {"tail": str(self.tail), "prefix": "true", "timestamps": "true"}
        if self.instance:
            q["instance"] = self.instance
        if self.follow:
            q["follow"] = "true"
        if self.since_seconds is not None:
            q["since"] = f"{self.since_seconds:g}"
        elif self.since_time is not None:
            q["since"] = self.since_time
        return q


@dataclass(frozen=True)
class Source:
    node: str
    url: str
    pem: str


def _sources(custom: Any, namespace: str, app: str) -> tuple[list[Source], int, int]:
    """(the agents to ask, how many instances the app has, nodes that cannot be asked)."""
    try:
        placements = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, WASMPLACEMENTS, label_selector=f"{APP_LABEL}={app}"
        )
    except ApiException as e:
        if e.status != 403:
            raise
        raise SystemExit(
            f"wasmlet: you may not list the placements in {namespace} (which nodes run "
            f"{app}): bind ClusterRole wasmlet-log-reader in {namespace} with a RoleBinding"
        ) from None
    items = placements.get("items", [])
    instances = sum(len((p.get("status") or {}).get("instances") or []) for p in items)
    sources, failed = [], 0
    for node in sorted({p["spec"]["node"] for p in items}):
        try:
            st = custom.get_cluster_custom_object(GROUP, VERSION, WASMNODES, node)["status"]
        except ApiException as e:
            if e.status != 403:
                raise
            raise SystemExit(
                f"wasmlet: you may not read WasmNode {node} (its agent's address and "
                "certificate): bind ClusterRole wasmlet-node-viewer with a ClusterRoleBinding"
            ) from None
        except KeyError:
            st = {}
        pem = st.get("servingCertificate")
        if not pem or not st.get("address"):
            print(f"wasmlet: node {node} has published no agent address or certificate yet "
                  "(status.servingCertificate)", file=sys.stderr)  # fmt: skip
            failed += 1
            continue
        sources.append(Source(node, agent_client.agent_url(st), pem))
    return sources, instances, failed


def _unreachable(src: Source, err: OSError) -> str:
    return (
        f"wasmlet: node {src.node}: cannot reach its agent at {src.url}: {err}. `wasmlet logs` "
        "reads each node's agent API directly with your own token (the API server's proxy "
        "would drop your identity): run it where the node addresses are routable (inside the "
        "cluster network, or through a VPN or bastion to the nodes)"
    )


def _refused(src: Source, namespace: str, code: int, text: str) -> str:
    hint = ""
    if code in (401, 403):
        hint = (f" (needs a bearer token in your kubeconfig allowed `get wasmapps/log` "
                f"in {namespace}: bind ClusterRole wasmlet-log-reader)")  # fmt: skip
    return f"wasmlet: node {src.node}: {code} {text.strip()}{hint}"


class _Printer:
    """Renders agent lines as the user asked; safe to call from one thread per node."""

    def __init__(self, out: TextIO, opts: LogOptions, prefix: bool) -> None:
        self.out, self.opts, self.prefix = out, opts, prefix
        self._lock = threading.Lock()

    def render(self, node: str, raw: str) -> str:
        w = parse_wire_line(raw)
        if w is None:  # an agent that does not know prefix/timestamps: its line as it is
            return f"{node} {raw}" if self.prefix else raw
        shown = f"{node}/{w.instance}" if self.prefix else None
        return render_line(w.text, w.time_ns, timestamps=self.opts.timestamps, prefix=shown)

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        with self._lock:
            self.out.write("".join(f"{x}\n" for x in lines))
            self.out.flush()


def logs(
    custom: Any,
    namespace: str,
    app: str,
    opts: LogOptions,
    out: TextIO,
    token: str | None,
) -> int:
    """Instance logs of `app` from every node that runs it, merged by time; with `follow`,
    streamed from every node at once until they end or Ctrl-C."""
    sources, instances, failed = _sources(custom, namespace, app)
    if not sources and not failed:
        print(f"wasmlet: no instances of {namespace}/{app} are placed on any node", file=sys.stderr)
        return 1
    nodes = len(sources) + failed
    query = urllib.parse.urlencode(opts.query())
    prefix = opts.prefix or (opts.instance is None and instances > 1)
    printer = _Printer(out, opts, prefix)
    if opts.follow:
        failed += _follow(sources, namespace, app, query, printer, token)
        return 1 if failed == nodes else 0
    merged: list[tuple[int, str, str]] = []
    for src in sources:
        url = f"{src.url}/logs/{namespace}/{app}?{query}"
        try:
            code, body = agent_client.get(url, token=token, pem=src.pem)
        except OSError as e:
            print(_unreachable(src, e), file=sys.stderr)
            failed += 1
            continue
        text = body.decode("utf-8", errors="replace")
        if code != 200:
            print(_refused(src, namespace, code, text), file=sys.stderr)
            failed += 1
            continue
        for raw in text.splitlines():
            w = parse_wire_line(raw)
            merged.append((w.time_ns if w else 0, src.node, raw))
    merged.sort(key=lambda m: (m[0], m[1]))
    printer.write([printer.render(node, raw) for _, node, raw in merged])
    return 1 if failed == nodes else 0


def _follow(
    sources: list[Source], namespace: str, app: str, query: str, printer: _Printer,
    token: str | None,
) -> int:  # fmt: skip
    """Stream every node's lines as they come; returns how many nodes could not be read."""
    failed: list[str] = []

    def one(src: Source) -> None:
        url = f"{src.url}/logs/{namespace}/{app}?{query}"
        try:
            with agent_client.stream(url, token=token, pem=src.pem) as (code, resp):
                if code != 200:
                    text = resp.read(4096).decode("utf-8", errors="replace")
                    print(_refused(src, namespace, code, text), file=sys.stderr)
                    failed.append(src.node)
                    return
                limit = resp.headers.get("X-Wasmlet-Follow-Limit", "")
                for raw in resp:
                    printer.write([printer.render(src.node, raw.decode("utf-8", "replace")
                                                  .rstrip("\n"))])  # fmt: skip
            print(f"wasmlet: node {src.node}: the agent ended the stream (the app left the "
                  f"node, or the stream's limit: {limit or 'unknown'}); run again to go on",
                  file=sys.stderr)  # fmt: skip
        except OSError as e:
            print(_unreachable(src, e), file=sys.stderr)
            failed.append(src.node)

    threads = [threading.Thread(target=one, args=(s,), daemon=True) for s in sources]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    except KeyboardInterrupt:
        return 0  # the user is done; the daemon threads end with the process
    return len(failed)


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
    lg.add_argument(
        "--tail", type=int, default=100, help="lines per instance (default 100; -1: all kept)"
    )
    lg.add_argument("--instance", default=None, help="only this instance (see wasmlet status)")
    lg.add_argument("-f", "--follow", action="store_true", help="stream new lines as they come")
    lg.add_argument(
        "--since", default=None, help="only lines newer than this duration, e.g. 30s, 5m, 1h"
    )
    lg.add_argument("--since-time", default=None, help="only lines from this RFC 3339 time on")
    lg.add_argument(
        "--timestamps", action="store_true", help="begin each line with its RFC3339Nano time"
    )
    lg.add_argument(
        "--prefix",
        action="store_true",
        help="begin each line with [node/instance] (the default when the app has several)",
    )
    return p


def main(argv: list[str], prog: str = "wasmlet") -> int:
    args = build_parser(prog).parse_args(argv)
    opts = log_options(args) if args.command == "logs" else None  # bad flags before any I/O
    try:
        target = resolve(args)
        api = _api(target)
    except (ConfigException, yaml.YAMLError, OSError) as e:
        used = args.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        why = " ".join(str(e).split()).rstrip(".")
        raise SystemExit(
            f"wasmlet: cannot use the kubeconfig {used}: {why}. Pass --kubeconfig FILE or set "
            "KUBECONFIG to a kubeconfig with a current context (or pass --context)"
        ) from None
    with api:
        custom = client.CustomObjectsApi(api)
        if opts is None:
            return status(custom, target.namespace, sys.stdout, args.output)
        assert target.namespace is not None
        token = agent_client.bearer_of(api)
        return logs(custom, target.namespace, args.app, opts, sys.stdout, token)


def log_options(args: argparse.Namespace) -> LogOptions:
    """The logs flags as values; SystemExit naming the flag and its form when one is wrong."""
    if args.since is not None and args.since_time is not None:
        raise SystemExit("wasmlet: give at most one of --since and --since-time")
    since = None
    if args.since is not None:
        try:
            since = parse_duration(args.since)
        except ValueError as e:
            raise SystemExit(f"wasmlet: --since: {e}") from None
    if args.since_time is not None:
        try:
            parse_timestamp(args.since_time)
        except ValueError as e:
            raise SystemExit(f"wasmlet: --since-time: {e}") from None
    return LogOptions(
        tail=args.tail,
        instance=args.instance,
        follow=args.follow,
        since_seconds=since,
        since_time=args.since_time,
        timestamps=args.timestamps,
        prefix=args.prefix,
    )
