"""The install on a real node: `kubectl apply -k deploy/`, operator and agent as pods from the
built image with their in-cluster tokens, a second apply that changes nothing, an HTTP WasmApp
served on the node's address, scale, a rollout, a leader handover, an agent pod replaced by
its DaemonSet serving from its cache, logs, every example, and a clean uninstall.

The tests run in file order and build on each other (one install per session)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.node.conftest import HttpModule
from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_dev.cluster.identities import admin_client
from wasmlet_dev.cluster.kubectl import Kubectl
from wasmlet_dev.cluster.stack import agent_get, observer_token
from wasmlet_dev.realnode import runtime
from wasmlet_dev.realnode.node import RealNode
from wasmlet_dev.waits import wait_until
from wasmlet_dev.wasm_build import build_c

pytestmark = [pytest.mark.e2e, pytest.mark.node]
NS = "wasmlet-system"
APP = "hello-http"


def app_manifest(module: HttpModule, replicas: int) -> str:
    return json.dumps({
        "apiVersion": "wasmlet.dev/v1alpha1",
        "kind": "WasmApp",
        "metadata": {"name": APP, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "mode": "http",
            "http": {"port": 8080},
            "module": {"http": {"url": module.url}, "digest": module.digest},
            "limits": {"memory": "16Mi", "requestTimeoutSeconds": 5},
        },
    })  # fmt: skip


def jsonpath(kubectl: Kubectl, *args: str) -> str:
    return kubectl("get", *args, check=False).stdout.strip()


def app_ready(kubectl: Kubectl) -> bool:
    status = '{.status.conditions[?(@.type=="Ready")].status}'
    return jsonpath(kubectl, "wasmapp", APP, "-o", f"jsonpath={status}") == "True"


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode(errors="replace")


def agent_pod(kubectl: Kubectl) -> str:
    """The name of the agent pod that is Running and Ready ('' if none)."""
    out = kubectl("-n", NS, "get", "pods", "-l", "app.kubernetes.io/name=wasmlet-agent",
                  "-o", "json").stdout  # fmt: skip
    for pod in json.loads(out)["items"]:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if pod["metadata"].get("deletionTimestamp") is None and conditions.get("Ready") == "True":
            return str(pod["metadata"]["name"])
    return ""


def cache_counts(real_node: RealNode) -> tuple[float, float]:
    """(hits, misses) of the agent's module cache, summed over kinds, read as Prometheus
    would: over the agent API's TLS (pinned to the WasmNode's certificate) with a token of
    the observer account, which deploy/'s metrics-reader role allows."""
    with admin_client(real_node.cluster.kubeconfig) as api:
        status, body = agent_get(api, real_node.node, "/metrics", observer_token(api))
    assert status == 200, body
    text = body.decode()
    totals = {"hits": 0.0, "misses": 0.0}
    for m in re.finditer(r"^wasmlet_module_cache_(hits|misses)_total\{[^}]*\} (\S+)$", text, re.M):
        totals[m.group(1)] += float(m.group(2))
    return totals["hits"], totals["misses"]


def test_install_runs_operator_and_agent_as_pods(real_node: RealNode) -> None:
    kubectl = real_node.kubectl()
    kubectl("apply", "-k", repo_root() / "deploy")
    kubectl("-n", NS, "rollout", "status", "deploy/wasmlet-operator", "--timeout=180s",
            timeout=200)  # fmt: skip
    kubectl("-n", NS, "rollout", "status", "ds/wasmlet-agent", "--timeout=180s", timeout=200)
    pods = json.loads(kubectl("-n", NS, "get", "pods", "-o", "json").stdout)["items"]
    for pod in pods:  # in-cluster identities: projected tokens, no kubeconfig anywhere
        for container in pod["spec"]["containers"]:
            assert container["image"] == "wasmlet:dev"
            assert not any("kubeconfig" in a for a in container.get("args", []))
        mounts = [m["mountPath"] for c in pod["spec"]["containers"] for m in c["volumeMounts"]]
        assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts


def installed_versions(kubectl: Kubectl) -> dict[tuple[str, str, str], str]:
    """Per object of the install, its spec's generation, or its resourceVersion for kinds
    without one (controllers' status writes bump a resourceVersion, not a generation)."""
    items = json.loads(kubectl("get", "-k", repo_root() / "deploy", "-o", "json").stdout)
    return {(i["kind"], i["metadata"].get("namespace", ""), i["metadata"]["name"]):
            str(i["metadata"].get("generation") or i["metadata"]["resourceVersion"])
            for i in items["items"]}  # fmt: skip


def test_a_second_install_changes_nothing(real_node: RealNode) -> None:
    # kubectl prints "configured" for a few kinds whose 3-way merge patch is not empty
    # although applying it changes nothing; what counts is that no object is written.
    kubectl = real_node.kubectl()
    before = installed_versions(kubectl)
    kubectl("apply", "-k", repo_root() / "deploy")
    after = installed_versions(kubectl)
    assert len(before) > 30
    assert {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v} == {}
    diff = kubectl("diff", "-k", repo_root() / "deploy", check=False)
    assert diff.returncode == 0 and diff.stdout == "", diff.stdout + diff.stderr


def test_http_app_ready_and_served_on_the_node_address(
    real_node: RealNode, hello_module: HttpModule
) -> None:
    kubectl = real_node.kubectl()
    kubectl("apply", "-f", "-", input=app_manifest(hello_module, replicas=2))
    wait_until(lambda: app_ready(kubectl), what=f"WasmApp {APP} to be Ready", timeout=120,
               interval=0.5)  # fmt: skip
    status, body = wait_until(lambda: http_get(f"http://{real_node.node_ip}:8080/hi?x=1"),
                              what="the app to answer on the node's address", timeout=60,
                              interval=0.5)  # fmt: skip
    assert status == 200, body


def test_kubectl_scale(real_node: RealNode) -> None:
    kubectl = real_node.kubectl()
    kubectl("scale", f"wasmapp/{APP}", "--replicas=3")
    replicas = "jsonpath={.status.replicas}"
    wait_until(lambda: jsonpath(kubectl, "wasmapp", APP, "-o", replicas) == "3" and
               app_ready(kubectl), what=f"WasmApp {APP} to run 3 replicas and be Ready",
               timeout=120, interval=0.5)  # fmt: skip


def test_rollout_to_a_new_module(real_node: RealNode, hello_module: HttpModule) -> None:
    kubectl = real_node.kubectl()
    patch = {"spec": {"module": {"http": {"url": hello_module.v2_url},
                                 "digest": hello_module.v2_digest}}}  # fmt: skip
    kubectl("patch", "wasmapp", APP, "--type=merge", "-p", json.dumps(patch))

    def rolled() -> bool:
        obj = json.loads(kubectl("get", "wasmapp", APP, "-o", "json").stdout)
        status = obj.get("status") or {}
        progressing = [c for c in status.get("conditions", []) if c["type"] == "Progressing"]
        return (
            hello_module.v2_digest in str(status.get("module"))
            and status.get("updatedReplicas") == status.get("readyReplicas") == 3
            and bool(progressing)
            and progressing[0].get("reason") == "RolloutComplete"
        )

    wait_until(rolled, what="the rollout to the new module", timeout=120, interval=0.5)
    assert http_get(f"http://{real_node.node_ip}:8080/")[0] == 200


def test_leader_pod_deleted_the_standby_takes_over(real_node: RealNode) -> None:
    kubectl = real_node.kubectl()
    holder = "jsonpath={.spec.holderIdentity}"
    leader = jsonpath(kubectl, "-n", NS, "lease", "wasmlet-operator", "-o", holder)
    assert leader
    kubectl("-n", NS, "delete", "pod", leader, "--wait=false")

    def new_leader() -> str:
        now = jsonpath(kubectl, "-n", NS, "lease", "wasmlet-operator", "-o", holder)
        return now if now and now != leader else ""

    taken = wait_until(new_leader, what="the standby to take the Lease", timeout=120,
                       interval=0.5)  # fmt: skip
    assert taken != leader
    # The new leader acts: a scale is carried out.
    kubectl("scale", f"wasmapp/{APP}", "--replicas=2")
    ready = "jsonpath={.status.readyReplicas}/{.status.replicas}"
    wait_until(lambda: jsonpath(kubectl, "wasmapp", APP, "-o", ready) == "2/2",
               what="the new leader to scale the app to 2", timeout=120,
               interval=0.5)  # fmt: skip


def test_deleted_agent_pod_comes_back_and_serves_from_its_cache(real_node: RealNode) -> None:
    kubectl = real_node.kubectl()
    old = agent_pod(kubectl)
    assert old
    kubectl("-n", NS, "delete", "pod", old, "--wait=true", timeout=180)

    def replaced() -> str:
        pod = agent_pod(kubectl)
        return pod if pod != old else ""

    new = wait_until(replaced, what="the DaemonSet to bring a new agent pod up", timeout=180,
                     interval=0.5)  # fmt: skip
    assert new != old
    wait_until(lambda: app_ready(kubectl), what=f"WasmApp {APP} Ready again", timeout=120,
               interval=0.5)  # fmt: skip
    wait_until(lambda: http_get(f"http://{real_node.node_ip}:8080/")[0] == 200,
               what="the new agent to serve the app", timeout=60, interval=0.5)  # fmt: skip

    def looked_up() -> tuple[float, float] | None:
        counts = cache_counts(real_node)
        return counts if counts[0] > 0 else None

    hits, misses = wait_until(looked_up, what="the new agent to look the module up", timeout=60,
                              interval=0.5)  # fmt: skip
    assert misses == 0, f"the new agent pulled or compiled again ({hits} hits, {misses} misses)"


def test_kubectl_logs_of_agent_and_operator(real_node: RealNode) -> None:
    kubectl = real_node.kubectl()
    pods = json.loads(kubectl("-n", NS, "get", "pods", "-o", "json").stdout)["items"]
    restarts = {p["metadata"]["name"]: [c["restartCount"] for c in p["status"]["containerStatuses"]]
                for p in pods}  # fmt: skip
    assert all(n == 0 for counts in restarts.values() for n in counts), restarts
    agent = kubectl("-n", NS, "logs", "ds/wasmlet-agent", "-c", "agent").stdout
    assert "wasmlet.agent" in agent
    leader = jsonpath(kubectl, "-n", NS, "lease", "wasmlet-operator", "-o",
                      "jsonpath={.spec.holderIdentity}")  # fmt: skip
    assert f"became leader as {leader}" in kubectl("-n", NS, "logs", leader).stdout
    for pod in pods:  # the standby's log may be empty, but it is served
        kubectl("-n", NS, "logs", pod["metadata"]["name"], "--all-containers")


def test_a_pod_security_level_that_forbids_the_agent_is_named(real_node: RealNode) -> None:
    """Bad input: wasmlet-system labelled `restricted`. The agent pod cannot be created, and
    `kubectl describe ds` says why; relabelled as deploy/ has it, the agent comes back."""
    kubectl = real_node.kubectl()
    enforce = "pod-security.kubernetes.io/enforce"
    old = agent_pod(kubectl)
    try:
        kubectl("label", "namespace", NS, f"{enforce}=restricted", "--overwrite")
        kubectl("-n", NS, "delete", "pod", old, "--wait=true", timeout=180)

        def refused() -> str:
            out = kubectl("-n", NS, "describe", "ds", "wasmlet-agent").stdout
            return out if "violates PodSecurity" in out else ""

        described = wait_until(refused, what="the DaemonSet to report the refusal", timeout=120,
                               interval=1.0)  # fmt: skip
        assert "FailedCreate" in described and "hostNetwork" in described, described
        assert agent_pod(kubectl) == ""
    finally:
        kubectl("label", "namespace", NS, f"{enforce}=privileged", "--overwrite")
    wait_until(lambda: agent_pod(kubectl), what="the agent pod back once the level allows it",
               timeout=240, interval=1.0)  # fmt: skip
    wait_until(lambda: app_ready(kubectl), what=f"WasmApp {APP} Ready again", timeout=120,
               interval=0.5)  # fmt: skip


# Ports the examples' HTTP apps take on the node (8080 is the app above's).
EXAMPLE_PORTS = iter(range(18080, 18100))


def test_every_example_reaches_ready_on_the_node(
    real_node: RealNode, hello_module: HttpModule, tmp_path: Path
) -> None:
    """examples/*.yaml as a user applies them, the module fetched over HTTP by the agent pod
    instead of from `wasmlet dev up`'s registry; a ConfigMap read through the node's reader."""
    kubectl = real_node.kubectl()
    ns = "examples"
    kubectl("create", "namespace", ns)
    ready = '{.status.conditions[?(@.type=="Ready")].status}'
    served: list[tuple[str, int]] = []
    for example in sorted((repo_root() / "examples").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
        apps = [d for d in docs if d["kind"] == "WasmApp"]
        for app in apps:
            repo = app["spec"]["module"]["oci"]["reference"].rsplit("/", 1)[1].split(":")[0]
            source = repo_root() / "examples" / "modules" / f"{repo}.c"
            wasm = build_c(source, tmp_path / f"{repo}.wasm").read_bytes()
            url, digest = hello_module.serve(f"example-{repo}.wasm", wasm)
            app["spec"]["module"] = {"http": {"url": url}, "digest": digest}
            if "http" in app["spec"]:
                app["spec"]["http"]["port"] = port = next(EXAMPLE_PORTS)
                served.append((app["metadata"]["name"], port))
        kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
        for app in apps:
            name = app["metadata"]["name"]
            wait_until(lambda n=name: jsonpath(kubectl, "-n", ns, "wasmapp", n, "-o",
                                               f"jsonpath={ready}") == "True",
                       what=f"{example.name}: WasmApp {name} Ready on the node", timeout=120,
                       interval=0.5)  # fmt: skip
    assert served, "no example serves HTTP"
    for name, port in served:
        status, body = wait_until(lambda p=port: http_get(f"http://{real_node.node_ip}:{p}/hi"),
                                  what=f"{name} to answer on the node's address", timeout=60,
                                  interval=0.5)  # fmt: skip
        assert status == 200, body
    kubectl("delete", "namespace", ns, "--wait", timeout=180)


def test_uninstall_leaves_nothing_behind(real_node: RealNode) -> None:
    kubectl = real_node.kubectl()
    kubectl("delete", "wasmapps", "--all", "--all-namespaces", "--wait", timeout=180)
    kubectl("delete", "-k", repo_root() / "deploy", "--wait", timeout=300)
    kinds = "crd,clusterrole,clusterrolebinding,validatingadmissionpolicy," \
            "validatingadmissionpolicybinding,priorityclass,namespace"  # fmt: skip
    left = kubectl("get", kinds, "-l", "app.kubernetes.io/part-of=wasmlet", "-o", "name").stdout
    assert left.strip() == ""
    assert "wasmlet.dev" not in kubectl("get", "crd", "-o", "name").stdout
    wait_until(lambda: runtime.ctr(real_node.containerd_dir, "tasks", "ls", "-q").strip() == "",
               what="every container on the node to be gone", timeout=120,
               interval=0.5)  # fmt: skip
