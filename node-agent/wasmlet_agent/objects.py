"""Where an instance's ConfigMaps and Secrets come from: the API server or manifest files."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from wasmlet.api.placements import Reason


class ConfigError(ValueError):
    """An app refers to something missing or forbidden; the message names the field, and
    `reason` (a placement-status Reason) says which kind of problem it is."""

    def __init__(self, path: str, problem: str, reason: str = Reason.CONFIG_ERROR) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.reason = reason


class ObjectLookup(Protocol):
    """Reads the ConfigMaps and Secrets an app refers to (None when absent)."""

    def config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


def config_map_files(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """File contents of a ConfigMap: data as UTF-8, binaryData decoded."""
    files = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    files.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return files


def secret_files(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """File contents of a Secret: data is base64, stringData (manifests only) is plain."""
    files = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    files.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    return files


class ManifestObjects:
    """ConfigMaps and Secrets declared beside WasmApps in manifest files (standalone mode)."""

    def __init__(self, docs: Iterable[Mapping[str, Any]], default_namespace: str = "default"):
        self._objects: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        for doc in docs:
            kind = doc.get("kind")
            if kind in ("ConfigMap", "Secret"):
                meta = doc.get("metadata") or {}
                ns = meta.get("namespace") or default_namespace
                self._objects[(str(kind), ns, str(meta.get("name")))] = doc

    def config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._objects.get(("ConfigMap", namespace, name))

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._objects.get(("Secret", namespace, name))
