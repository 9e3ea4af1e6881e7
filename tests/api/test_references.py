"""Which Secrets and ConfigMaps a template names: every place a name can hide, and no more."""

from __future__ import annotations

from typing import Any

import pytest

from wasmlet.api.references import References, node_reader, references, union

S = frozenset


@pytest.mark.parametrize(
    ("template", "secrets", "config_maps"),
    [
        ({"module": {"oci": {"reference": "r/x:v1"}}}, S(), S()),
        ({"module": {"oci": {"reference": "r/x:v1", "pullSecret": "pull"}}}, S({"pull"}), S()),
        ({"module": {"configMap": {"name": "mod", "key": "m.wasm"}}}, S(), S({"mod"})),
        (
            {"env": [
                {"name": "A", "value": "literal"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}},
                {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}},
            ]},
            S({"s1"}), S({"c1"}),
        ),
        (
            {"volumes": [
                {"name": "a", "secret": {"secretName": "s2"}},
                {"name": "b", "configMap": {"name": "c2"}},
                {"name": "c", "emptyDir": {}},
                {"name": "d", "hostPath": {"path": "/srv"}},
            ]},
            S({"s2"}), S({"c2"}),
        ),
        (  # the same name twice is one grant
            {"module": {"oci": {"reference": "r/x", "pullSecret": "s"}},
             "volumes": [{"name": "v", "secret": {"secretName": "s"}}]},
            S({"s"}), S(),
        ),
        (  # malformed pieces (a skewed schema) are skipped, never an error or an empty name
            {"env": "nope", "volumes": [None, {"secret": {"secretName": ""}}, {"configMap": 3}],
             "module": {"oci": None}},
            S(), S(),
        ),
    ],
)  # fmt: skip
def test_references(
    template: dict[str, Any], secrets: frozenset[str], config_maps: frozenset[str]
) -> None:
    assert references(template) == References(secrets, config_maps)


def test_union_and_truth() -> None:
    a, b = References(S({"s"})), References(config_maps=S({"c"}))
    assert union([a, b]) == References(S({"s"}), S({"c"}))
    assert not References() and a and b


def test_node_reader_is_never_the_shared_account() -> None:
    assert node_reader("n1") == "wasmlet-agent-n1" != "wasmlet-agent"
