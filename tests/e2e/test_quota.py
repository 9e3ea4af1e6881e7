"""WasmAppQuota on the real API server: a tenant gets what fits, the rest is refused naming the
quota, the tenant cannot change the quota, and other namespaces are unaffected (issue 9,
item 7). Also: an HTTP app counts limits.memory x limits.maxConcurrency at placement."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.stack import Stack, free_port, wasmapp
from tests.fixtures.tenants import Tenant
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def editor(stack: Stack, namespace: str) -> Path:
    """A tenant as most clusters make one: a ServiceAccount bound to the built-in `edit`
    ClusterRole in its namespace, which gets wasmlet's rules from deploy/11-tenant-roles.yaml
    by aggregation."""
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tenant-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
        },
    ]  # fmt: skip
    stack.kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))
    kubeconfig = stack.kube.kubeconfig_for("tenant", namespace)
    wait_until(
        lambda: as_tenant(stack, kubeconfig, namespace, "auth", "can-i", "create",
                          "wasmapps.wasmlet.dev").returncode == 0,
        "the edit role aggregates wasmlet-edit",
    )  # fmt: skip
    return kubeconfig


def as_tenant(stack: Stack, kubeconfig: Path, namespace: str, *args: str,
              input: str | None = None) -> Any:  # fmt: skip
    return stack.kube.kubectl(
        "--kubeconfig", str(kubeconfig), "-n", namespace, *args, input=input, check=False
    )


def quota(name: str, **hard: Any) -> dict[str, Any]:
    return {"apiVersion": "wasmlet.dev/v1alpha1", "kind": "WasmAppQuota",
            "metadata": {"name": name}, "spec": {"hard": hard}}  # fmt: skip


def cond(stack: Stack, ns: str, name: str, type_: str) -> dict[str, Any]:
    for c in (stack.app(ns, name).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def placed(stack: Stack, ns: str, name: str) -> int:
    return sum(int(p["spec"]["replicas"]) for p in stack.placements(ns, name))


def quota_used(stack: Stack, ns: str, name: str) -> dict[str, Any]:
    obj: Any = stack.custom.get_namespaced_custom_object(
        "wasmlet.dev", "v1alpha1", ns, "wasmappquotas", name
    )
    return dict((obj.get("status") or {}).get("used") or {})


def warning_events(stack: Stack, ns: str, reason: str) -> list[str]:
    out = stack.kube.kubectl("get", "events", "-n", ns, "-o", "json")
    return [
        f"{e['involvedObject']['name']}: {e['message']}"
        for e in json.loads(out.stdout)["items"]
        if e.get("reason") == reason and e.get("type") == "Warning"
    ]


def refused(stack: Stack, ns: str, name: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        c = cond(stack, ns, name, "Degraded")
        return c if c.get("reason") == "QuotaExceeded" and c.get("status") == "True" else None

    return check


def ready(stack: Stack, ns: str, name: str) -> bool:
    return cond(stack, ns, name, "Ready").get("status") == "True"


def test_tenant_gets_what_fits_and_the_refusal_names_the_quota(
    stack: Stack, namespace: str, tenants: Callable[[str], Tenant]
) -> None:
    tenant = editor(stack, namespace)
    stack.apply(namespace, quota("team-quota", memory="256Mi", replicas=100))
    long = stack.modules["long"]

    def apply(doc: dict[str, Any]) -> None:
        out = as_tenant(stack, tenant, namespace, "apply", "-f", "-", input=yaml.safe_dump(doc))
        assert out.returncode == 0, out.stderr

    apply(wasmapp("first", long, replicas=2, limits={"memory": "64Mi"}))
    wait_until(lambda: ready(stack, namespace, "first"), "first app Ready (within quota)")
    apply(wasmapp("second", long, replicas=3, limits={"memory": "64Mi"}))
    degraded = wait_until(refused(stack, namespace, "second"), "second: Degraded QuotaExceeded")
    assert degraded["message"].startswith(
        "WasmAppQuota team-quota: 2 of 3 replicas fit; memory used 128Mi of hard 256Mi, "
        "each replica needs 64Mi"
    ), degraded["message"]
    assert "spec.hard.memory" in degraded["message"]
    r = cond(stack, namespace, "second", "Ready")
    assert (r["status"], r["reason"]) == ("False", "QuotaExceeded")
    wait_until(lambda: placed(stack, namespace, "second") == 2, "2 of 3 replicas placed")
    assert placed(stack, namespace, "first") == 2  # first come, first served
    events = wait_until(
        lambda: warning_events(stack, namespace, "QuotaExceeded"), "a Warning Event"
    )
    assert any(e.startswith("second: WasmAppQuota team-quota:") for e in events), events
    used = wait_until(
        lambda: (u := quota_used(stack, namespace, "team-quota")).get("replicas") == 4 and u,
        "status.used on the quota",
    )
    assert used == {"memory": "256Mi", "httpPorts": 0, "replicas": 4}
    columns = stack.kube.kubectl("get", "wasmappquotas", "-n", namespace).stdout
    assert columns.split("\n")[0].split()[:5] == ["NAME", "MEMORY", "MEMORY", "HARD", "HTTP"]
    assert "256Mi" in columns.split("\n")[1]

    # The tenant reads the quota but cannot change or delete it (a quota is the admin's).
    out = as_tenant(stack, tenant, namespace, "get", "wasmappquota", "team-quota")
    assert out.returncode == 0, out.stderr
    for verb in (
        ("patch", "wasmappquota", "team-quota", "--type=merge",
         "-p", '{"spec":{"hard":{"memory":"64Gi"}}}'),
        ("patch", "wasmappquota", "team-quota", "--subresource=status", "--type=merge",
         "-p", '{"status":{"used":{"memory":"0"}}}'),
        ("delete", "wasmappquota", "team-quota"),
        ("create", "-f", "-"),
    ):  # fmt: skip
        doc = yaml.safe_dump(quota("mine", memory="1Ti")) if verb[0] == "create" else None
        out = as_tenant(stack, tenant, namespace, *verb, input=doc)
        assert out.returncode != 0 and "forbidden" in out.stderr.lower(), (verb, out.stderr)

    # Another namespace is unaffected: no quota there, and this one's usage is not its.
    other = tenants("other")
    out = stack.kube.kubectl(*other.kubectl_args(
        "apply", "-f", "-"), input=yaml.safe_dump(wasmapp("big", long, replicas=5,
                                                          limits={"memory": "64Mi"})),
        check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    wait_until(lambda: ready(stack, other.namespace, "big"), "all 5 replicas in the other ns")
    assert quota_used(stack, namespace, "team-quota")["replicas"] == 4

    # Raising the quota places the rest.
    stack.kube.kubectl("patch", "wasmappquota", "team-quota", "-n", namespace, "--type=merge",
                       "-p", '{"spec":{"hard":{"memory":"320Mi"}}}')  # fmt: skip
    wait_until(lambda: ready(stack, namespace, "second"), "second Ready after the raise")
    assert placed(stack, namespace, "second") == 3
    assert cond(stack, namespace, "second", "Degraded")["status"] == "False"

    # Scaling up beyond it is refused again; deleting the older app frees its share.
    out = as_tenant(stack, tenant, namespace, "scale", "wasmapp/second", "--replicas=5")
    assert out.returncode == 0, out.stderr
    c = wait_until(
        lambda: (c := refused(stack, namespace, "second")()) and "3 of 5" in c["message"] and c,
        "3 of 5 fit",
    )  # fmt: skip
    assert "memory used 128Mi of hard 320Mi" in c["message"]
    out = as_tenant(stack, tenant, namespace, "delete", "wasmapp", "first", "--wait=true")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: ready(stack, namespace, "second"), "second gets first's share")
    assert placed(stack, namespace, "second") == 5
    wait_until(
        lambda: (
            quota_used(stack, namespace, "team-quota")
            == {"memory": "320Mi", "httpPorts": 0, "replicas": 5}
        ),
        "status.used follows the delete",
    )


def test_http_ports_and_http_memory_count_against_the_quota(stack: Stack, namespace: str) -> None:
    tenant = editor(stack, namespace)
    # An http replica counts limits.memory x limits.maxConcurrency: 16Mi x 4 = 64Mi.
    stack.apply(namespace, quota("ports", httpPorts=1))
    stack.apply(namespace, quota("memory", memory="128Mi"))
    address = next(iter(stack.agents.values())).address
    p1, p2 = free_port(address), free_port(address)
    limits = {"memory": "16Mi", "maxConcurrency": 4}
    # creationTimestamp has whole seconds; on a tie, names decide: web1 before web2.
    for name, port, replicas in (("web1", p1, 3), ("web2", p2, 1)):
        app = wasmapp(name, stack.modules["cgi"], mode="http", replicas=replicas,
                      http={"port": port}, limits=limits)  # fmt: skip
        out = as_tenant(stack, tenant, namespace, "apply", "-f", "-", input=yaml.safe_dump(app))
        assert out.returncode == 0, out.stderr
        if name == "web1":
            c = wait_until(refused(stack, namespace, "web1"), "web1: 2 of 3 fit by memory")
            assert c["message"].startswith(
                "WasmAppQuota memory: 2 of 3 replicas fit; memory used 0 of hard 128Mi, "
                "each replica needs 64Mi"
            ), c["message"]
    c = wait_until(refused(stack, namespace, "web2"), "web2: refused, a second port")
    assert c["message"].startswith(
        f"WasmAppQuota ports: httpPorts used 1 of hard 1; http.port {p2} would be one more"
    ), c["message"]
    assert stack.placements(namespace, "web2") == []
    wait_until(lambda: placed(stack, namespace, "web1") == 2, "web1: 2 replicas placed")
    used = wait_until(
        lambda: (u := quota_used(stack, namespace, "ports")).get("httpPorts") == 1 and u,
        "httpPorts used",
    )
    assert used == {"memory": "128Mi", "httpPorts": 1, "replicas": 2}


def test_quota_fields_are_validated_naming_the_field(stack: Stack, namespace: str) -> None:
    for hard, field in (
        ({"memory": "lots"}, "spec.hard.memory"),
        ({"memory": "1.5Gi"}, "spec.hard.memory"),
        ({"httpPorts": -1}, "spec.hard.httpPorts"),
        ({"replicas": "many"}, "spec.hard.replicas"),
        ({}, "spec.hard"),
    ):
        doc = yaml.safe_dump(quota("bad", **hard))
        out = stack.kube.kubectl("apply", "-n", namespace, "-f", "-", input=doc, check=False)
        assert out.returncode != 0, hard
        assert field in out.stderr, (hard, out.stderr)
        if "memory" in hard:
            assert "must be a quantity like 8Gi" in out.stderr, out.stderr


def test_http_app_takes_max_concurrency_times_memory_on_a_node(
    stack: Stack, namespace: str
) -> None:
    """Agents offer 8Gi: one replica of an HTTP app that may run 3 instances of 3Gi at once
    (9Gi) fits on no node (counted as replicas x memory it would have); one instance at once
    does, even beside other tests' apps."""
    port = free_port(next(iter(stack.agents.values())).address)
    app = wasmapp("greedy", stack.modules["cgi"], mode="http", replicas=1, http={"port": port},
                  limits={"memory": "3Gi", "maxConcurrency": 3})  # fmt: skip
    stack.apply(namespace, app)
    c = wait_until(
        lambda: (c := cond(stack, namespace, "greedy", "Ready")).get("reason")
        == "InsufficientCapacity" and c,
        "InsufficientCapacity",
    )  # fmt: skip
    assert "x limits.maxConcurrency per node in http mode" in c["message"]
    assert stack.placements(namespace, "greedy") == []
    app["spec"]["limits"]["maxConcurrency"] = 1  # 3Gi
    stack.apply(namespace, app)
    wait_until(lambda: ready(stack, namespace, "greedy"), "fits with maxConcurrency 1")
