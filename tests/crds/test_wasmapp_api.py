"""The WasmApp API on a real kube-apiserver: examples apply, bad input is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIGEST = "sha256:" + "0" * 64


def manifest(name: str, **spec: object) -> str:
    body: dict[str, object] = {"module": {"oci": {"reference": "r.example/app:1"}}}
    body.update(spec)
    return yaml.safe_dump(
        {
            "apiVersion": "wasmlet.dev/v1alpha1",
            "kind": "WasmApp",
            "metadata": {"name": name},
            "spec": body,
        }
    )


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_applies(kube, namespace: str, example: str) -> None:
    out = kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / example))
    assert "created" in out.stdout


MODULE = {"oci": {"reference": "r.example/app:1"}}

# (name, spec override, text the API server's message must contain)
INVALID: list[tuple[str, dict[str, object], str]] = [
    ("missing-module", {"module": None}, "spec.module: Required value"),
    (
        "two-sources",
        {"module": {"oci": {"reference": "a"}, "configMap": {"name": "m", "key": "k"}}},
        "spec.module: Invalid value: set exactly one of oci, http or configMap",
    ),
    (
        "no-source",
        {"module": {"digest": DIGEST}},
        "spec.module: Invalid value: set exactly one of oci, http or configMap",
    ),
    (
        "bad-digest",
        {"module": {"oci": {"reference": "a"}, "digest": "sha256:abc"}},
        'spec.module.digest: Invalid value: "sha256:abc": must be sha256: followed by 64',
    ),
    (
        "http-without-digest",
        {"module": {"http": {"url": "https://example.com/m.wasm"}}},
        "spec.module.digest: Invalid value: required for an http source",
    ),
    (
        "bad-url",
        {"module": {"http": {"url": "ftp://x/m.wasm"}, "digest": DIGEST}},
        'spec.module.http.url: Invalid value: "ftp://x/m.wasm": must start with http://',
    ),
    ("negative-replicas", {"replicas": -1}, "spec.replicas: Invalid value: -1"),
    ("too-many-replicas", {"replicas": 5000}, "spec.replicas: Invalid value: 5000"),
    ("wrong-type", {"replicas": "three"}, "spec.replicas in body must be of type integer"),
    (
        "relative-mount",
        {
            "volumes": [{"name": "d", "emptyDir": {}}],
            "volumeMounts": [{"name": "d", "mountPath": "data"}],
        },
        'spec.volumeMounts[0].mountPath: Invalid value: "data": must be absolute',
    ),
    (
        "undeclared-volume",
        {"volumeMounts": [{"name": "nope", "mountPath": "/data"}]},
        "spec.volumeMounts: Invalid value: every mount must name a volume declared in spec.volumes",
    ),
    (
        "duplicate-mount",
        {
            "volumes": [{"name": "d", "emptyDir": {}}],
            "volumeMounts": [
                {"name": "d", "mountPath": "/data"},
                {"name": "d", "mountPath": "/data"},
            ],
        },
        'spec.volumeMounts[1]: Duplicate value: {"mountPath":"/data"}',
    ),
    (
        "port-out-of-range",
        {"mode": "http", "http": {"port": 70000}},
        "spec.http.port: Invalid value: 70000",
    ),
    (
        "http-without-http-mode",
        {"http": {"port": 8080}},
        "spec.http: Invalid value: only valid when spec.mode is http",
    ),
    (
        "memory-over-cap",
        {"limits": {"memory": "8Gi"}},
        'spec.limits.memory: Invalid value: "8Gi": must be at most 4Gi',
    ),
    (
        "memory-bad-unit",
        {"limits": {"memory": "64MB"}},
        "spec.limits.memory in body should match '^[0-9]+(Ki|Mi|Gi)?$'",
    ),
    (
        "bad-restart-policy",
        {"restartPolicy": "Sometimes"},
        'spec.restartPolicy: Unsupported value: "Sometimes"',
    ),
    ("bad-mode", {"mode": "batch"}, 'spec.mode: Unsupported value: "batch"'),
    (
        "env-both",
        {
            "env": [
                {
                    "name": "A",
                    "value": "1",
                    "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}},
                }
            ]
        },
        "spec.env[0]: Invalid value: set exactly one of value or valueFrom",
    ),
    (
        "two-volume-sources",
        {"volumes": [{"name": "d", "emptyDir": {}, "hostPath": {"path": "/tmp"}}]},
        "spec.volumes[0]: Invalid value: set exactly one of emptyDir, configMap, secret or"
        " hostPath",
    ),
    (
        "relative-hostpath",
        {"volumes": [{"name": "d", "hostPath": {"path": "tmp"}}]},
        'spec.volumes[0].hostPath.path: Invalid value: "tmp": must be absolute',
    ),
    (
        "backoff-inverted",
        {"backoff": {"initialSeconds": 60, "maxSeconds": 5}},
        "spec.backoff: Invalid value: initialSeconds must not exceed maxSeconds",
    ),
    (
        "backoff-zero",
        {"backoff": {"initialSeconds": 0, "maxSeconds": 0}},
        "spec.backoff.initialSeconds: Invalid value: 0: must be at least 0.1 seconds",
    ),
    (
        "h" * 64,
        {"mode": "http", "http": {}},
        "metadata.name: an http-mode WasmApp gets a Service of its name",
    ),
    (
        "deadline-zero",
        {"progressDeadlineSeconds": 0},
        "spec.progressDeadlineSeconds: Invalid value: 0",
    ),
    (
        "deadline-before-first-retry",
        {"progressDeadlineSeconds": 5},  # backoff.initialSeconds defaults to 10
        "spec.progressDeadlineSeconds: Invalid value: must be greater than "
        "spec.backoff.initialSeconds",
    ),
    (
        "deadline-equal-to-first-retry",
        {"progressDeadlineSeconds": 2, "backoff": {"initialSeconds": 2.0}},
        "spec.progressDeadlineSeconds: Invalid value: must be greater than "
        "spec.backoff.initialSeconds",
    ),
    (
        "readiness-relative-path",
        {"mode": "http", "http": {"readinessCheck": {"path": "healthz"}}},
        'spec.http.readinessCheck.path: Invalid value: "healthz": must start with /',
    ),
    (
        "readiness-path-with-space",
        {"mode": "http", "http": {"readinessCheck": {"path": "/a b"}}},
        'spec.http.readinessCheck.path: Invalid value: "/a b": must not contain spaces',
    ),
    (
        "readiness-period-zero",
        {"mode": "http", "http": {"readinessCheck": {"periodSeconds": 0}}},
        "spec.http.readinessCheck.periodSeconds: Invalid value: 0",
    ),
    (
        "readiness-threshold-too-high",
        {"mode": "http", "http": {"readinessCheck": {"failureThreshold": 101}}},
        "spec.http.readinessCheck.failureThreshold: Invalid value: 101",
    ),
    (
        "readiness-unknown-field",
        {"mode": "http", "http": {"readinessCheck": {"port": 80}}},
        'unknown field "spec.http.readinessCheck.port"',
    ),
    (
        "http-mode-never-restart",
        {"mode": "http", "http": {}, "restartPolicy": "Never"},
        "spec.restartPolicy: Invalid value: must be Always when spec.mode is http",
    ),
]


@pytest.mark.parametrize(("name", "override", "message"), INVALID, ids=[i[0][:40] for i in INVALID])
def test_invalid_manifest_is_refused(
    kube, namespace: str, name: str, override: dict[str, object], message: str
) -> None:
    spec: dict[str, object] = {"module": MODULE}
    spec.update(override)
    spec = {k: v for k, v in spec.items() if v is not None}
    doc = {
        "apiVersion": "wasmlet.dev/v1alpha1",
        "kind": "WasmApp",
        "metadata": {"name": name},
        "spec": spec,
    }
    out = kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    # Nothing of a refused manifest is stored.
    got = kube.kubectl("get", "wasmapp", name, "-n", namespace, check=False)
    assert got.returncode != 0 and "NotFound" in got.stderr


def test_unknown_field_is_refused(kube, namespace: str) -> None:
    doc = yaml.safe_load(manifest("unknown"))
    doc["spec"]["replicaz"] = 2
    out = kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert out.returncode != 0
    assert 'unknown field "spec.replicaz"' in out.stderr


def test_defaults_are_applied(kube, namespace: str) -> None:
    kube.kubectl(
        "apply", "-n", namespace, "-f", "-", input=manifest("defaults", mode="http", http={})
    )
    obj = json.loads(
        kube.kubectl("get", "wasmapp", "defaults", "-n", namespace, "-o", "json").stdout
    )
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["http"] == {"port": 8080}
    assert obj["spec"]["limits"]["memory"] == "64Mi"
    assert obj["spec"]["restartPolicy"] == "Always"
    assert obj["spec"]["progressDeadlineSeconds"] == 600
    # A deadline past a fractional first retry is fine (CEL compares as numbers).
    fine = manifest("deadline-ok", progressDeadlineSeconds=3, backoff={"initialSeconds": 2.5})
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=fine)


def test_readiness_check_defaults_are_applied(kube, namespace: str) -> None:
    body = manifest("checked", mode="http", http={"readinessCheck": {"path": "/healthz"}})
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=body)
    obj = json.loads(
        kube.kubectl("get", "wasmapp", "checked", "-n", namespace, "-o", "json").stdout
    )
    assert obj["spec"]["http"]["readinessCheck"] == {
        "path": "/healthz", "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
        "failureThreshold": 3, "initialDelaySeconds": 0,
    }  # fmt: skip


def test_scale_changes_spec_replicas(kube, namespace: str) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("scaled"))
    kube.kubectl("scale", "wasmapp/scaled", "-n", namespace, "--replicas=3")
    got = kube.kubectl(
        "get", "wasmapp", "scaled", "-n", namespace, "-o", "jsonpath={.spec.replicas}"
    )
    assert got.stdout == "3"
    scale = json.loads(
        kube.kubectl(
            "get",
            "--raw",
            f"/apis/wasmlet.dev/v1alpha1/namespaces/{namespace}/wasmapps/scaled/scale",
        ).stdout
    )
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
    refused = kube.kubectl("scale", "wasmapp/scaled", "-n", namespace, "--replicas=-2", check=False)
    assert refused.returncode != 0


def test_status_only_through_status_subresource(kube, namespace: str) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("st"))
    patch = json.dumps({"status": {"readyReplicas": 7, "ready": "7/1"}})
    # A patch of the main resource silently drops status ...
    kube.kubectl("patch", "wasmapp", "st", "-n", namespace, "--type=merge", "-p", patch)
    got = kube.kubectl(
        "get", "wasmapp", "st", "-n", namespace, "-o", "jsonpath={.status.readyReplicas}"
    )
    assert got.stdout == ""
    # ... and the status subresource takes it, and the spec through it is ignored.
    both = json.dumps({"spec": {"replicas": 9}, "status": {"readyReplicas": 7, "ready": "7/1"}})
    kube.kubectl(
        "patch",
        "wasmapp",
        "st",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        both,
    )
    obj = json.loads(kube.kubectl("get", "wasmapp", "st", "-n", namespace, "-o", "json").stdout)
    assert obj["status"]["readyReplicas"] == 7
    assert obj["spec"]["replicas"] == 1


def test_get_prints_columns(kube, namespace: str) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("cols", replicas=2))
    status = json.dumps({"status": {"ready": "1/2", "module": "r.example/app:1@sha256:ab"}})
    kube.kubectl(
        "patch",
        "wasmapp",
        "cols",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    )
    out = kube.kubectl("get", "wasmapps", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "REPLICAS", "MODE", "MODULE", "AGE"]
    assert out[1].split()[:5] == ["cols", "1/2", "2", "command", "r.example/app:1@sha256:ab"]
    # -o wide adds the target module and the Progressing reason (a rollout under way).
    rolling = {"targetModule": "r.example/app:2", "conditions": [
        {"type": "Progressing", "status": "True", "reason": "RolloutInProgress",
         "lastUpdateTime": "2026-01-01T00:00:00Z"}]}  # fmt: skip
    kube.kubectl("patch", "wasmapp", "cols", "-n", namespace, "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": rolling}))  # fmt: skip
    wide = kube.kubectl("get", "wasmapps", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME", "READY", "REPLICAS", "MODE", "MODULE", "TARGET", "PROGRESSING", "AGE",
    ]  # fmt: skip
    assert wide[1].split()[4:7] == [
        "r.example/app:1@sha256:ab", "r.example/app:2", "RolloutInProgress",
    ]  # fmt: skip
    stored = json.loads(
        kube.kubectl("get", "wasmapp", "cols", "-n", namespace, "-o", "json").stdout
    )
    # lastUpdateTime is in the schema: the API server keeps it (the deadline's clock).
    assert stored["status"]["conditions"][0]["lastUpdateTime"] == "2026-01-01T00:00:00Z"
    # Short name and category work as users expect.
    assert "cols" in kube.kubectl("get", "wapp", "-n", namespace).stdout
    assert "cols" in kube.kubectl("get", "wasmlet", "-n", namespace).stdout


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("wasmapp.spec.module", "Set exactly one of oci, http or configMap"),
        ("wasmapp.spec.limits.memory", "Maximum linear memory per instance"),
        ("wasmapp.spec.restartPolicy", "Restarts back off exponentially"),
        ("wasmplacement.spec.template", "The WasmApp spec the instances run"),
    ],
)
def test_explain_describes_fields(kube, field: str, text: str) -> None:
    out = kube.kubectl("explain", field).stdout
    assert text in " ".join(out.split())


def test_placement_node_is_immutable(kube, namespace: str) -> None:
    doc = {
        "apiVersion": "wasmlet.dev/v1alpha1",
        "kind": "WasmPlacement",
        "metadata": {"name": "p"},
        "spec": {
            "app": "a",
            "node": "n1",
            "replicas": 1,
            "revision": "r1",
            "template": {"module": MODULE},
        },
    }
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    doc["spec"]["node"] = "n2"  # type: ignore[index]
    out = kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert out.returncode != 0 and "node and app are immutable" in out.stderr
