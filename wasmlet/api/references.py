"""Which Secrets and ConfigMaps a WasmApp template names: what its node's agent may read.

The operator grants each node's agent `get` on exactly these names (like the kubelet's Node
authorizer, which lets a kubelet read only what the pods bound to its node reference), and
the agent asks for nothing else. Read from the raw template so a template this version cannot
parse still yields every name it mentions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The ServiceAccount (in SYSTEM_NAMESPACE) whose token a node's agent reads Secrets and
# ConfigMaps with; one per node, so RBAC can tell nodes apart.
NODE_READER_PREFIX = "wasmlet-agent-"


def node_reader(node: str) -> str:
    """The name of node `node`'s reader ServiceAccount, and of its Roles and RoleBindings."""
    return f"{NODE_READER_PREFIX}{node}"


@dataclass(frozen=True)
class References:
    """Names of Secrets and ConfigMaps in one namespace, and whether the node's agent may post
    Events there (it may wherever it runs an app: the grant a placement always brings)."""

    secrets: frozenset[str] = frozenset()
    config_maps: frozenset[str] = frozenset()
    events: bool = False

    def __or__(self, other: References) -> References:
        return References(
            self.secrets | other.secrets,
            self.config_maps | other.config_maps,
            self.events or other.events,
        )

    def __bool__(self) -> bool:
        return bool(self.secrets or self.config_maps or self.events)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _name(value: Any) -> list[str]:
    return [value] if isinstance(value, str) and value else []


def references(template: Mapping[str, Any]) -> References:
    """What `template` (a WasmApp spec or a placement's template) names: env `valueFrom`,
    `configMap`/`secret` volumes, `module.configMap` and `module.oci.pullSecret`."""
    secrets: list[str] = []
    config_maps: list[str] = []
    module = _dict(template.get("module"))
    secrets += _name(_dict(module.get("oci")).get("pullSecret"))
    config_maps += _name(_dict(module.get("configMap")).get("name"))
    for env in _list(template.get("env")):
        source = _dict(_dict(env).get("valueFrom"))
        secrets += _name(_dict(source.get("secretKeyRef")).get("name"))
        config_maps += _name(_dict(source.get("configMapKeyRef")).get("name"))
    for volume in _list(template.get("volumes")):
        volume = _dict(volume)
        secrets += _name(_dict(volume.get("secret")).get("secretName"))
        config_maps += _name(_dict(volume.get("configMap")).get("name"))
    return References(frozenset(secrets), frozenset(config_maps))


def union(refs: Iterable[References]) -> References:
    out = References()
    for r in refs:
        out = out | r
    return out
