"""Small modules kept in a ConfigMap key: decoded from the object dict the caller already read."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from wasmlet_agent.sources.base import (
    DEFAULT_MAX_MODULE_BYTES,
    InvalidSource,
    ModuleBytes,
    NotFound,
    check_size,
    check_wasm,
)
from wasmlet_agent.sources.digests import verify_digest


def _field(obj: Mapping[str, Any], camel: str, snake: str) -> Mapping[str, Any]:
    # Raw API JSON uses camelCase; the kubernetes client's to_dict() uses snake_case.
    value = obj.get(camel, obj.get(snake))
    return value if isinstance(value, Mapping) else {}


def module_from_configmap(
    configmap: Mapping[str, Any],
    key: str,
    *,
    expected_digest: str | None = None,
    max_bytes: int = DEFAULT_MAX_MODULE_BYTES,
) -> ModuleBytes:
    """The module bytes under `key`: binaryData (base64) first, then data (UTF-8 text)."""
    meta = configmap.get("metadata") or {}
    name = f"{meta.get('namespace', '')}/{meta.get('name', '?')}".lstrip("/")
    what = f"ConfigMap {name} key {key!r}"
    binary = _field(configmap, "binaryData", "binary_data")
    text = _field(configmap, "data", "data")

    if key in binary:
        encoded = binary[key]
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError, ValueError) as e:
            raise InvalidSource(
                f"{what}: binaryData is not valid base64 ({e}); recreate it with "
                "kubectl create configmap NAME --from-file=KEY=app.wasm"
            ) from e
    elif key in text:
        data = str(text[key]).encode("utf-8")
    else:
        present = sorted({*binary, *text})
        raise NotFound(
            f"ConfigMap {name} has no key {key!r} in binaryData or data (keys present: "
            f"{', '.join(present) if present else 'none'}); fix spec.module.configMap.key or "
            "add the key"
        )

    check_size(len(data), max_bytes, what)
    module = ModuleBytes.of(data, f"configmap:{name}/{key}")
    if expected_digest is not None:
        verify_digest(data, expected_digest, what)
    check_wasm(data, what)
    return module
