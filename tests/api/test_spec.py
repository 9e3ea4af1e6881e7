"""parse_spec: defaults, types and the rules standalone mode enforces without an API server."""

from __future__ import annotations

import re
from typing import Any

import pytest

from wasmlet.api.constants import Mode, RestartPolicy
from wasmlet.api.manifests import parse_app
from wasmlet.api.spec import HttpSpec, ReadinessCheck, SpecError, parse_quantity, parse_spec

DIGEST = "sha256:" + "a" * 64


def test_minimal_spec_gets_crd_defaults() -> None:
    spec = parse_spec({"module": {"oci": {"reference": "r.example/app:1"}}})
    assert spec.replicas == 1
    assert spec.mode is Mode.COMMAND
    assert spec.restart_policy is RestartPolicy.ALWAYS
    assert spec.limits.memory_bytes == 64 * 1024**2
    assert spec.http is None
    assert spec.network.outbound is False


def test_http_mode_defaults_port() -> None:
    spec = parse_spec({"mode": "http", "module": {"configMap": {"name": "m", "key": "k"}}})
    assert spec.http is not None and spec.http.port == 8080


def test_readiness_check_gets_crd_defaults() -> None:
    spec = parse_spec(
        {
            "mode": "http",
            "module": {"oci": {"reference": "a"}},
            "http": {"readinessCheck": {"path": "/healthz?full=1"}},
        }
    )
    assert spec.http is not None and spec.http.readiness_check == ReadinessCheck(
        path="/healthz?full=1", period_seconds=10, timeout_seconds=1, success_threshold=1,
        failure_threshold=3, initial_delay_seconds=0,
    )  # fmt: skip
    assert parse_spec({"mode": "http", "module": {"oci": {"reference": "a"}}}).http == HttpSpec()


def test_full_spec_parses() -> None:
    spec = parse_spec(
        {
            "replicas": 3,
            "mode": "command",
            "module": {"http": {"url": "https://x/m.wasm"}, "digest": DIGEST},
            "args": ["a", "b"],
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "c"}},
            ],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "restartPolicy": "OnFailure",
            "backoff": {"initialSeconds": 1, "maxSeconds": 8},
            "nodeSelector": {"zone": "edge"},
        }
    )
    assert spec.args == ("a", "b")
    assert spec.env[1].value_from is not None
    assert spec.env[1].value_from.secret_key_ref is not None
    assert spec.volumes[0].empty_dir is not None
    assert spec.volume_mounts[0].mount_path == "/data"
    assert spec.backoff.max_seconds == 8
    assert dict(spec.node_selector) == {"zone": "edge"}


BAD: list[tuple[dict[str, Any], str]] = [
    ({}, "spec.module: is required"),
    ({"module": {}}, "spec.module: set exactly one of oci, http, configMap"),
    (
        {"module": {"oci": {"reference": "a"}, "http": {"url": "http://x"}, "digest": DIGEST}},
        "spec.module: set exactly one",
    ),
    ({"module": {"http": {"url": "http://x"}}}, "spec.module.digest: is required"),
    (
        {"module": {"oci": {"reference": "a"}, "digest": "sha256:xyz"}},
        "spec.module.digest: must be",
    ),
    ({"module": {"oci": {"reference": "a"}}, "replicas": -1}, "spec.replicas: must be between"),
    (
        {"module": {"oci": {"reference": "a"}}, "replicas": "3"},
        "spec.replicas: must be of type int",
    ),
    ({"module": {"oci": {"reference": "a"}}, "mode": "batch"}, "spec.mode: 'batch' is not one of"),
    ({"module": {"oci": {"reference": "a"}}, "restartPolicy": "Sometimes"}, "spec.restartPolicy"),
    ({"module": {"oci": {"reference": "a"}}, "bogus": 1}, "spec.bogus: unknown field"),
    ({"module": {"oci": {"reference": "a"}}, "limits": {"memory": "5Gi"}}, "spec.limits.memory"),
    (
        {"module": {"oci": {"reference": "a"}}, "mode": "http", "http": {"port": 70000}},
        "spec.http.port",
    ),
    (
        {
            "module": {"oci": {"reference": "a"}},
            "volumes": [{"name": "v", "emptyDir": {}}],
            "volumeMounts": [{"name": "v", "mountPath": "data"}],
        },
        "spec.volumeMounts[0].mountPath: must be absolute",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "volumeMounts": [{"name": "v", "mountPath": "/d"}]},
        "spec.volumeMounts[0].name: no volume named 'v'",
    ),
    (
        {
            "module": {"oci": {"reference": "a"}},
            "volumes": [{"name": "v", "emptyDir": {}}],
            "volumeMounts": [{"name": "v", "mountPath": "/d"}, {"name": "v", "mountPath": "/d"}],
        },
        "spec.volumeMounts[1].mountPath: duplicate mount path /d",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "env": [{"name": "A"}]},
        "spec.env[0]: set exactly one",
    ),
    # What the CRD refuses, `wasmlet run` refuses too (no API server checks its files).
    ({"module": {"oci": {"reference": "a"}}, "limits": {"fuel": -1}}, "spec.limits.fuel: -1"),
    (
        {
            "module": {"oci": {"reference": "a"}},
            "volumes": [{"name": "../../x", "emptyDir": {}}],
            "volumeMounts": [{"name": "../../x", "mountPath": "/d"}],
        },
        "spec.volumes[0].name: '../../x' must be a DNS label",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "backoff": {"initialSeconds": 0}},
        "spec.backoff.initialSeconds: 0 must be between 0.1 and 3600",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "backoff": {"initialSeconds": 9, "maxSeconds": 1}},
        "spec.backoff: initialSeconds must not exceed maxSeconds",
    ),
    ({"module": {"oci": {"reference": "a"}}, "limits": {"memory": "1Ki"}}, "at least 64Ki"),
    (
        {"module": {"oci": {"reference": "a"}}, "limits": {"timeoutSeconds": -1}},
        "spec.limits.timeoutSeconds",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "limits": {"maxConcurrency": 0}},
        "spec.limits.maxConcurrency",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "strategy": {"maxUnavailable": "lots"}},
        "spec.strategy.maxUnavailable",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "strategy": {"maxSurge": 1}},
        "spec.strategy.maxSurge: unknown field",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "mode": "http", "restartPolicy": "Never"},
        "spec.restartPolicy: must be Always",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "env": [{"name": "A=B", "value": "1"}]},
        "spec.env[0].name",
    ),
    (
        {"module": {"oci": {"reference": "a"}}, "progressDeadlineSeconds": 0},
        "spec.progressDeadlineSeconds: 0 must be at least 1",
    ),
    (  # the default first restart delay is 10 s: a 5 s deadline would come before it
        {"module": {"oci": {"reference": "a"}}, "progressDeadlineSeconds": 5},
        "spec.progressDeadlineSeconds: must be greater than spec.backoff.initialSeconds (10)",
    ),
    (
        {
            "module": {"oci": {"reference": "a"}},
            "progressDeadlineSeconds": 2,
            "backoff": {"initialSeconds": 2},
        },
        "raise progressDeadlineSeconds or lower backoff.initialSeconds",
    ),
    *(
        (
            {
                "module": {"oci": {"reference": "a"}},
                "mode": "http",
                "http": {"readinessCheck": check},
            },
            message,
        )
        for check, message in [
            ({"path": "healthz"}, "spec.http.readinessCheck.path: must start with /"),
            ({"path": "/a b"}, "spec.http.readinessCheck.path: must not contain spaces"),
            ({"path": "/a\nb"}, "spec.http.readinessCheck.path: must not contain spaces"),
            ({"path": "/" + "a" * 1024}, "spec.http.readinessCheck.path: must be at most 1024"),
            ({"periodSeconds": 0}, "spec.http.readinessCheck.periodSeconds: 0 must be between"),
            ({"timeoutSeconds": 601}, "spec.http.readinessCheck.timeoutSeconds: 601"),
            ({"successThreshold": 0}, "spec.http.readinessCheck.successThreshold: 0"),
            ({"failureThreshold": 101}, "spec.http.readinessCheck.failureThreshold: 101"),
            ({"initialDelaySeconds": -1}, "spec.http.readinessCheck.initialDelaySeconds: -1"),
            (
                {"periodSeconds": "10s"},
                "spec.http.readinessCheck.periodSeconds: must be of type int",
            ),
            ({"path": "/", "port": 80}, "spec.http.readinessCheck.port: unknown field"),
        ]
    ),
]


@pytest.mark.parametrize(
    ("name", "namespace", "mode", "message"),
    [
        ("x" * 64, "default", "http", "metadata.name: 'xxxx"),
        ("1web", "default", "http", "DNS-1035 label"),
        ("../etc", "default", "command", "metadata.name: '../etc' must be a DNS subdomain"),
        ("ok", "../..", "command", "metadata.namespace: '../..' must be a DNS label"),
    ],
)
def test_standalone_names_are_checked(name: str, namespace: str, mode: str, message: str) -> None:
    doc = {
        "apiVersion": "wasmlet.dev/v1alpha1",
        "kind": "WasmApp",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"module": {"oci": {"reference": "a"}}, "mode": mode},
    }
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_app(doc)
    doc["metadata"] = {"name": "x" * 64}  # a long name is fine for a command-mode app
    doc["spec"] = {"module": {"oci": {"reference": "a"}}}
    assert parse_app(doc).name == "x" * 64


@pytest.mark.parametrize(("raw", "message"), BAD)
def test_bad_spec_names_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"), [("64Mi", 64 * 1024**2), ("1Gi", 1024**3), ("4096", 4096), ("2Ki", 2048)]
)
def test_parse_quantity(text: str, expected: int) -> None:
    assert parse_quantity(text, "f") == expected


def test_parse_quantity_rejects_decimal_suffix() -> None:
    with pytest.raises(SpecError, match="f: '64M' is not a quantity"):
        parse_quantity("64M", "f")
