"""ConfigMaps and Secrets read from the API server when an instance starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class ApiLookup:
    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core

    def _get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            obj: Any = (
                self.core.read_namespaced_config_map(name, namespace)
                if kind == "ConfigMap"
                else self.core.read_namespaced_secret(name, namespace)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {"data": obj.data or {}, "binaryData": getattr(obj, "binary_data", None) or {}}

    def config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get("ConfigMap", namespace, name)

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get("Secret", namespace, name)
