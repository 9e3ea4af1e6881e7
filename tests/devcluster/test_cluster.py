"""The session's control plane behaves like a real cluster: kubectl, RBAC, tokens, controllers."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.cluster import Kube
from wasmlet_dev.cluster.kubectl import KubectlError
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def test_server_reports_the_pinned_kubernetes_minor(kube: Kube) -> None:
    version = json.loads(kube.kubectl("get", "--raw", "/version").stdout)
    assert (version["major"], version["minor"]) == ("1", "36")


def test_kubectl_version(kube: Kube) -> None:
    out = kube.kubectl("version").stdout
    assert "Client Version: v1.36.3" in out
    assert "Server Version: v1.36" in out


def test_get_namespaces_lists_the_system_ones(kube: Kube) -> None:
    names = kube.kubectl("get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(names)


def test_admin_is_a_cluster_admin(kube: Kube) -> None:
    assert kube.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"


def test_rbac_denies_a_service_account_without_bindings(kube: Kube, namespace: str) -> None:
    kube.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    kubeconfig = kube.kubeconfig_for("nobody", namespace)
    result = kube.kubectl(f"--kubeconfig={kubeconfig}", "get", "namespaces", check=False)
    assert result.returncode != 0
    assert "Forbidden" in result.stderr
    assert f"system:serviceaccount:{namespace}:nobody" in result.stderr


def test_token_authenticates_as_the_service_account(kube: Kube, namespace: str) -> None:
    kube.kubectl("create", "serviceaccount", "probe", "-n", namespace)
    kubeconfig = kube.kubeconfig_for("probe", namespace, seconds=600)
    review = json.loads(
        kube.kubectl(f"--kubeconfig={kubeconfig}", "auth", "whoami", "-o", "json").stdout
    )
    user = review["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:probe"
    assert f"system:serviceaccounts:{namespace}" in user["groups"]


def test_deploy_identities_can_get_tokens(kube: Kube) -> None:
    accounts = kube.kubectl("get", "sa", "-n", "wasmlet-system", "-o", "name", check=False)
    # What this checks must be there: a missing account is a broken deploy/, not a skip.
    assert "serviceaccount/wasmlet-operator" in accounts.stdout.split(), (
        f"deploy/ must define the wasmlet-system/wasmlet-operator ServiceAccount; "
        f"kubectl get sa: {accounts.stdout or accounts.stderr}"
    )
    kubeconfig = kube.kubeconfig_for("wasmlet-operator")
    whoami = kube.kubectl(f"--kubeconfig={kubeconfig}", "auth", "whoami", "-o", "json").stdout
    username = json.loads(whoami)["status"]["userInfo"]["username"]
    assert username == "system:serviceaccount:wasmlet-system:wasmlet-operator"


def test_crds_are_established(kube: Kube) -> None:
    crds = kube.kubectl("get", "crd", "-o", "json").stdout
    ours = [c for c in json.loads(crds)["items"] if c["spec"]["group"] == "wasmlet.dev"]
    assert ours, "crds/ must hold the wasmlet.dev CRDs; the cluster has none of them"
    for crd in ours:
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", crd["metadata"]["name"]


def test_deleting_a_namespace_completes(kube: Kube, namespace: str) -> None:
    # Content makes the namespace controller do real work: it must delete it first.
    kube.kubectl("create", "configmap", "c", "-n", namespace, "--from-literal=k=v")
    kube.kubectl("delete", "namespace", namespace, "--timeout=60s")
    gone = kube.kubectl("get", "namespace", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_garbage_collector_deletes_dependents_of_a_deleted_owner(
    kube: Kube, namespace: str
) -> None:
    kube.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = kube.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    child = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
        "stringData": {"k": "v"},
    }
    kube.kubectl("create", "-f", "-", input=json.dumps(child))
    # The dependent survives while its owner exists...
    assert kube.kubectl("get", "secret", "child", "-n", namespace, check=False).returncode == 0
    # ...and goes once the owner is deleted (orphan-free background deletion).
    kube.kubectl("delete", "configmap", "owner", "-n", namespace, "--cascade=background")

    def child_gone() -> bool:
        return kube.kubectl("get", "secret", "child", "-n", namespace, check=False).returncode != 0

    wait_until(child_gone, "the garbage collector to delete secret/child", timeout=60)


def test_api_client_acts_as_admin(kube: Kube) -> None:
    from kubernetes import client

    with kube.api_client() as api:
        names = [
            ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items if ns.metadata
        ]
    assert "kube-system" in names


def test_kubectl_failure_carries_stderr(kube: Kube) -> None:
    with pytest.raises(KubectlError, match="NotFound"):
        kube.kubectl("get", "namespace", "does-not-exist-4f2a")
