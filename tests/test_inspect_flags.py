"""`wasmlet status`/`logs` flags in kubectl's habits: kubeconfig, context, namespaces, output."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.inspect import (
    LogOptions,
    _Printer,
    build_parser,
    log_options,
    main,
    resolve,
    status,
)

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [
        {"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
        {"name": "bare", "context": {"cluster": "c", "user": "u"}},
    ],
    "current-context": "dev",
}


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return str(path)


def target(*argv: str) -> tuple[str | None, str | None]:
    t = resolve(build_parser().parse_args(list(argv)))
    return t.context, t.namespace


def test_namespace_comes_from_the_flag_the_context_or_default(
    kubeconfig: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert target("status", "--kubeconfig", kubeconfig) == (None, "team-a")
    assert target("status", "--kubeconfig", kubeconfig, "--context", "bare") == ("bare", "default")
    assert target("status", "--kubeconfig", kubeconfig, "-n", "x") == (None, "x")
    assert target("status", "--kubeconfig", kubeconfig, "-A") == (None, None)
    assert target("logs", "app", "--kubeconfig", kubeconfig) == (None, "team-a")
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    assert target("status") == (None, "team-a")
    with pytest.raises(SystemExit, match="context 'nope' is not in the kubeconfig"):
        target("status", "--context", "nope")


class FakeCustom:
    """The two list calls and the cluster-wide node list, answered from fixed objects."""

    app = {
        "kind": "WasmApp",
        "metadata": {"namespace": "team-a", "name": "web"},
        "spec": {"replicas": 2, "mode": "http"},
        "status": {
            "ready": "1/2", "updatedReplicas": 1, "module": "r/web:v1@sha256:aa",
            "targetModule": "r/web:v2",
            "conditions": [{"type": "Ready", "status": "False", "reason": "Shortfall",
                            "message": "1 of 2 instances ready"},
                           {"type": "Progressing", "status": "False",
                            "reason": "ProgressDeadlineExceeded"}],
        },
    }  # fmt: skip
    node = {
        "kind": "WasmNode",
        "metadata": {"name": "n1", "labels": {"zone": "a"}},
        "status": {"address": "10.0.0.1", "agentPort": 10260, "instances": 1},
    }
    placement = {
        "kind": "WasmPlacement",
        "metadata": {"namespace": "team-a", "name": "web-n1"},
        "spec": {"app": "web", "node": "n1"},
        "status": {"instances": [{"name": "web-abc", "state": "Running", "restarts": 0,
                                  "revision": "r1", "exitCode": 3}]},
    }  # fmt: skip
    seen: list[str | None] = []

    def list_namespaced_custom_object(self, g: str, v: str, ns: str, plural: str) -> Any:
        self.seen.append(ns)
        return {"items": [self.app] if plural == "wasmapps" else [self.placement]}

    def list_cluster_custom_object(self, g: str, v: str, plural: str) -> Any:
        self.seen.append(None)
        items = {"wasmapps": [self.app], "wasmnodes": [self.node], "wasmplacements": []}
        return {"items": items.get(plural, [self.placement])}


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_status_prints_a_list_of_the_objects(output: str) -> None:
    out = io.StringIO()
    assert status(FakeCustom(), "team-a", out, output) == 0
    doc = json.loads(out.getvalue()) if output == "json" else yaml.safe_load(out.getvalue())
    assert doc["kind"] == "List"
    assert [o["kind"] for o in doc["items"]] == ["WasmApp", "WasmNode", "WasmPlacement"]


def test_status_wide_adds_columns() -> None:
    plain, wide = io.StringIO(), io.StringIO()
    status(FakeCustom(), "team-a", plain)
    status(FakeCustom(), "team-a", wide, "wide")
    assert "MESSAGE" not in plain.getvalue() and "r/web:v2" not in plain.getvalue()
    assert "r/web:v1@sha256:aa" in plain.getvalue()  # MODULE: what serves
    for text in ("UPDATED", "1 of 2 instances ready", "AGENT-PORT", "zone=a", "EXIT", "r1",
                 "TARGET", "r/web:v2", "False/ProgressDeadlineExceeded"):  # fmt: skip
        assert text in wide.getvalue()


def test_all_namespaces_lists_cluster_wide() -> None:
    custom = FakeCustom()
    custom.seen = []
    status(custom, None, io.StringIO())
    assert custom.seen == [None, None, None]


def options(*argv: str) -> LogOptions:
    return log_options(build_parser().parse_args(["logs", "app", *argv]))


def test_cli_flags_become_the_agent_query() -> None:
    o = options("-f", "--since", "5m", "--tail", "3", "--instance", "app-1", "--timestamps")
    assert o.query() == {"tail": "3", "prefix": "true", "timestamps": "true",
                         "instance": "app-1", "follow": "true", "since": "300"}  # fmt: skip
    t = options("--since-time", "2025-12-01T11:00:00Z")
    assert t.query()["since"] == "2025-12-01T11:00:00Z" and "follow" not in t.query()
    with pytest.raises(SystemExit, match="--since: '5 minutes' is not a duration"):
        options("--since", "5 minutes")
    with pytest.raises(SystemExit, match="--since-time: 'noon' is not an RFC 3339 time"):
        options("--since-time", "noon")
    with pytest.raises(SystemExit, match="at most one of --since and --since-time"):
        options("--since", "1m", "--since-time", "2025-12-01T11:00:00Z")


def test_printer_prefixes_node_and_instance_and_shows_times_only_when_asked() -> None:
    wire = "[app-0] 2025-12-01T12:00:00.123456789Z hello"
    several = _Printer(io.StringIO(), LogOptions(timestamps=True), prefix=True)
    assert several.render("n1", wire) == "[n1/app-0] 2025-12-01T12:00:00.123456789Z hello"
    one = _Printer(io.StringIO(), LogOptions(), prefix=False)
    assert one.render("n1", wire) == "hello"


def test_bad_flags_and_a_missing_kubeconfig_are_named_before_any_cluster_is_asked(
    tmp_path: Path,
) -> None:
    missing, broken = tmp_path / "missing", tmp_path / "broken"
    broken.write_text("clusters: [")
    with pytest.raises(SystemExit, match="--since: '5min' is not a duration"):
        main(["logs", "app", "-n", "a", "--since", "5min", "--kubeconfig", str(missing)])
    for argv in (["logs", "app", "-n", "a"], ["status"]):
        for path in (missing, broken):
            with pytest.raises(SystemExit, match=f"kubeconfig {path}: .+Pass --kubeconfig"):
                main([*argv, "--kubeconfig", str(path)])
