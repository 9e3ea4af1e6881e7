"""Modules from a ConfigMap object: binaryData, data, and the errors a user can act on."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.agent.sources.helpers import wasm_module
from wasmlet_agent.sources import (
    DigestMismatch,
    InvalidSource,
    NotFound,
    NotWasm,
    Reason,
    TooLarge,
    compute_digest,
    module_from_configmap,
)


def configmap(binary: dict[str, bytes] | None = None, data: dict[str, str] | None = None) -> Any:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "mods", "namespace": "apps"},
    }
    if binary is not None:
        obj["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    if data is not None:
        obj["data"] = data
    return obj


def test_binary_data() -> None:
    module = wasm_module("cm")
    got = module_from_configmap(configmap({"app.wasm": module}), "app.wasm")
    assert got.data == module
    assert got.digest == compute_digest(module)
    assert got.source == "configmap:apps/mods/app.wasm"


def test_binary_data_with_expected_digest() -> None:
    module = wasm_module("cm2")
    got = module_from_configmap(
        configmap({"m": module}), "m", expected_digest=compute_digest(module)
    )
    assert got.data == module


def test_snake_case_dict_from_kubernetes_client() -> None:
    module = wasm_module("snake")
    obj = configmap({"m": module})
    obj["binary_data"] = obj.pop("binaryData")
    assert module_from_configmap(obj, "m").data == module


def test_data_key_as_utf8() -> None:
    # The empty module is valid UTF-8, so kubectl puts it under data.
    module = wasm_module("")[:8]
    got = module_from_configmap(configmap(data={"tiny": module.decode()}), "tiny")
    assert got.data == module


def test_missing_key_lists_keys_present() -> None:
    obj = configmap({"b.wasm": wasm_module("b")}, {"a.txt": "x"})
    with pytest.raises(NotFound) as info:
        module_from_configmap(obj, "app.wasm")
    msg = str(info.value)
    assert "apps/mods" in msg and "'app.wasm'" in msg and "a.txt, b.wasm" in msg
    assert info.value.reason is Reason.MODULE_NOT_FOUND


def test_missing_key_in_empty_configmap() -> None:
    with pytest.raises(NotFound, match="keys present: none"):
        module_from_configmap(configmap(), "app.wasm")


def test_digest_mismatch() -> None:
    module = wasm_module("mm")
    wrong = compute_digest(b"other")
    with pytest.raises(DigestMismatch) as info:
        module_from_configmap(configmap({"m": module}), "m", expected_digest=wrong)
    assert info.value.expected == wrong and info.value.actual == compute_digest(module)


def test_not_wasm() -> None:
    with pytest.raises(NotWasm, match="not a WebAssembly module"):
        module_from_configmap(configmap(data={"m": "(module)"}), "m")


def test_bad_base64() -> None:
    obj = configmap()
    obj["binaryData"] = {"m": "!!!not base64"}
    with pytest.raises(InvalidSource, match="base64"):
        module_from_configmap(obj, "m")


def test_size_limit() -> None:
    with pytest.raises(TooLarge):
        module_from_configmap(configmap({"m": wasm_module("big")}), "m", max_bytes=4)
