"""resolve_env: literals and ConfigMap/Secret keys, with errors that name the entry."""

from __future__ import annotations

import base64

import pytest

from wasmlet.api.spec import parse_spec
from wasmlet_agent.objects import ConfigError, ManifestObjects

OBJECTS = ManifestObjects(
    [
        {"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"level": "debug"}},
        {
            "kind": "Secret",
            "metadata": {"name": "sec", "namespace": "team"},
            "data": {"token": base64.b64encode(b"s3cret").decode()},
        },
    ]
)


def spec_with_env(*env: dict[str, object]):  # type: ignore[no-untyped-def]
    return parse_spec({"module": {"oci": {"reference": "r/x:1"}}, "env": list(env)})


def test_literal_configmap_and_secret_values() -> None:
    from wasmlet_agent.environment import resolve_env

    spec = spec_with_env(
        {"name": "A", "value": "1"},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
    )
    assert resolve_env(spec, "default", OBJECTS) == {"A": "1", "LEVEL": "debug"}
    spec = spec_with_env(
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}}
    )
    assert resolve_env(spec, "team", OBJECTS) == {"TOKEN": "s3cret"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}},
            "spec.env[0].valueFrom.configMapKeyRef: ConfigMap default/nope not found",
        ),
        (
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
            "ConfigMap default/cfg has no key 'k' (keys: level)",
        ),
        (
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            "spec.env[0].valueFrom.secretKeyRef: Secret default/sec not found",
        ),
    ],
)
def test_unresolvable_entry_is_named(env: dict[str, object], message: str) -> None:
    from wasmlet_agent.environment import resolve_env

    with pytest.raises(ConfigError) as err:
        resolve_env(spec_with_env(env), "default", OBJECTS)
    assert message in str(err.value)
