"""What each node's agent may read and where it may post Events: per namespace and node, a
Role granting `get` and `watch` on exactly the Secrets and ConfigMaps its placements name, and
`create` on Events in every namespace where it has a placement, bound to that node's reader
ServiceAccount (the agent's own identity creates no Events: RBAC cannot scope a create to the
namespaces a node runs apps in, and admission cannot look placements up; this grant can).
`watch` with resourceNames allows a watch whose field selector is `metadata.name=<name>` (the
API server authorizes it as a request for that name): the agent reads each object once and
then follows it (`cluster/object_cache.py`), so restarts do not read again. No `list`: the
agent never needs one.

Pure: built from placements, written by `grant_writer.py`. An empty grant is no Role at all
(`resourceNames: []` in RBAC means every name, so an empty list must never be written); a
pair with a placement always has its Events rule, so its Role lives as long as a placement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from wasmlet.api.constants import NODE_LABEL, SYSTEM_NAMESPACE
from wasmlet.api.references import References, node_reader, references
from wasmlet_operator.builders import MANAGED_BY

GRANT_LABEL = "wasmlet.dev/agent-grant"
RBAC = "rbac.authorization.k8s.io"
VERBS = ["get", "watch"]  # deploy/32-operator-grant-policy.yaml allows exactly these
EVENTS_RULE = {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}  # and this
Pair = tuple[str, str]  # (namespace, node)
# What every placement brings its node in its namespace, whatever its template names.
PLACED = References(events=True)


def desired_grants(placements: Iterable[Mapping[str, Any]]) -> dict[Pair, References]:
    """(namespace, node) -> what the agent of node needs in namespace: a pair with a
    placement always has a grant (its Events), with the names its templates reference."""
    out: dict[Pair, References] = {}
    for p in placements:
        spec = p.get("spec") or {}
        pair = (str((p.get("metadata") or {}).get("namespace") or ""), str(spec.get("node") or ""))
        out[pair] = out.get(pair, PLACED) | references(spec.get("template") or {})
    return out


def _labels(node: str) -> dict[str, str]:
    return {**MANAGED_BY, GRANT_LABEL: "true", NODE_LABEL: node}


def role_rules(refs: References) -> list[dict[str, Any]]:
    rules = []
    for resource, names in (("configmaps", refs.config_maps), ("secrets", refs.secrets)):
        if names:  # never an empty resourceNames: that would grant every name
            rules.append(
                {
                    "apiGroups": [""],
                    "resources": [resource],
                    "verbs": list(VERBS),
                    "resourceNames": sorted(names),
                }
            )
    if refs.events:
        rules.append(dict(EVENTS_RULE))
    return rules


def build_role(namespace: str, node: str, refs: References) -> dict[str, Any]:
    if not refs:
        raise ValueError("an empty grant is no Role (resourceNames: [] would mean every name)")
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "Role",
        "metadata": {"name": node_reader(node), "namespace": namespace, "labels": _labels(node)},
        "rules": role_rules(refs),
    }


def build_role_binding(namespace: str, node: str) -> dict[str, Any]:
    name = node_reader(node)
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(node)},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": SYSTEM_NAMESPACE}],
    }


def build_reader_account(node: str, node_uid: str | None) -> dict[str, Any]:
    """Node `node`'s reader ServiceAccount, owned by its WasmNode (deleted with it)."""
    meta: dict[str, Any] = {
        "name": node_reader(node),
        "namespace": SYSTEM_NAMESPACE,
        "labels": _labels(node),
    }
    if node_uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": "wasmlet.dev/v1alpha1",
                "kind": "WasmNode",
                "name": node,
                "uid": node_uid,
                "blockOwnerDeletion": False,
            }
        ]
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


def pair_of(role: Mapping[str, Any]) -> Pair | None:
    """The (namespace, node) a grant Role is for, from its labels."""
    meta = role.get("metadata") or {}
    node = (meta.get("labels") or {}).get(NODE_LABEL)
    return (str(meta.get("namespace")), str(node)) if node else None
