"""Per-node read grants built from placements: exact names, never an empty resourceNames."""

from __future__ import annotations

from typing import Any

import pytest

from wasmlet.api.references import References
from wasmlet_operator.grants import (
    build_reader_account,
    build_role,
    build_role_binding,
    desired_grants,
    pair_of,
    role_rules,
)

S = frozenset


def placement(ns: str, node: str, template: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns}, "spec": {"node": node, "template": template}}


def secret_env(name: str) -> dict[str, Any]:
    return {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": name, "key": "k"}}}]}


def test_desired_grants_per_namespace_and_node() -> None:
    got = desired_grants(
        [
            placement("a", "n1", secret_env("s1")),
            placement("a", "n1", {"volumes": [{"name": "v", "configMap": {"name": "c1"}}]}),
            placement("a", "n2", secret_env("s2")),
            placement("b", "n1", secret_env("s3")),
            placement("b", "n2", {"module": {"oci": {"reference": "r/x"}}}),  # names nothing
        ]
    )
    assert got == {
        ("a", "n1"): References(S({"s1"}), S({"c1"}), events=True),
        ("a", "n2"): References(S({"s2"}), events=True),
        ("b", "n1"): References(S({"s3"}), events=True),
        ("b", "n2"): References(events=True),  # Events where it runs an app, names or not
    }
    assert desired_grants([]) == {}


@pytest.mark.parametrize(
    ("refs", "rules"),
    [
        (References(S({"b", "a"})),
         [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch"],
           "resourceNames": ["a", "b"]}]),
        (References(config_maps=S({"c"})),
         [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "watch"],
           "resourceNames": ["c"]}]),
        (References(), []),
        (References(events=True),
         [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]),
        (References(S({"s"}), events=True),
         [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch"],
           "resourceNames": ["s"]},
          {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]),
    ],
)  # fmt: skip
def test_role_rules_name_exactly_and_only_get_and_watch(refs: References, rules: list[Any]) -> None:
    assert role_rules(refs) == rules


def test_an_empty_grant_is_no_role() -> None:
    # resourceNames: [] would mean every name: building one must be impossible.
    with pytest.raises(ValueError, match="every name"):
        build_role("a", "n1", References())


def test_role_binding_and_account_name_the_node() -> None:
    role = build_role("a", "n1", References(S({"s"})))
    binding = build_role_binding("a", "n1")
    assert role["metadata"]["name"] == binding["metadata"]["name"] == "wasmlet-agent-n1"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "wasmlet-agent-n1"
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "wasmlet-agent-n1", "namespace": "wasmlet-system"}
    ]
    assert pair_of(role) == ("a", "n1")
    account = build_reader_account("n1", "uid-1")
    assert account["metadata"]["name"] == "wasmlet-agent-n1"
    assert account["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert "ownerReferences" not in build_reader_account("n1", None)["metadata"]
