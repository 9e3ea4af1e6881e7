"""Reading WasmApp manifests from YAML files (standalone mode and the CLI)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wasmlet.api.constants import API_VERSION, Mode
from wasmlet.api.spec import DNS_1035_RE, DNS_LABEL_RE, SpecError, WasmAppSpec, parse_spec


@dataclass(frozen=True)
class WasmApp:
    name: str
    namespace: str
    spec: WasmAppSpec
    generation: int = 1


def parse_app(obj: Mapping[str, Any], default_namespace: str = "default") -> WasmApp:
    """A WasmApp from an API object dict; raises SpecError naming the field."""
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != "WasmApp":
        raise SpecError(
            "apiVersion/kind",
            f"expected {API_VERSION} WasmApp, got {obj.get('apiVersion')} {obj.get('kind')}",
        )
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError("metadata.name", "is required")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError("spec", "is required")
    namespace = meta.get("namespace") or default_namespace
    # The API server checks names; standalone mode must too (they become directory names).
    if not isinstance(namespace, str) or len(namespace) > 63 or not DNS_LABEL_RE.match(namespace):
        raise SpecError("metadata.namespace", f"{namespace!r} must be a DNS label")
    if len(name) > 253 or not all(DNS_LABEL_RE.match(p) for p in name.split(".")):
        raise SpecError("metadata.name", f"{name!r} must be a DNS subdomain name")
    parsed = parse_spec(spec)
    if parsed.mode is Mode.HTTP and (len(name) > 63 or not DNS_1035_RE.match(name)):
        raise SpecError(
            "metadata.name",
            f"{name!r}: an http-mode app's name must be a DNS-1035 label (at most 63 lowercase "
            "letters, digits and '-', starting with a letter)",
        )
    return WasmApp(
        name=name,
        namespace=namespace,
        spec=parsed,
        generation=int(meta.get("generation") or 1),
    )


def load_documents(path: Path) -> Iterator[dict[str, Any]]:
    """Every non-empty YAML document in a file."""
    with path.open() as f:
        for doc in yaml.safe_load_all(f):
            if doc:
                yield doc
