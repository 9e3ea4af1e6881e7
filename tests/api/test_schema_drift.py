"""The Python spec model and the CRD schema describe the same fields with the same defaults."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.api import spec as model

CRDS = Path(__file__).resolve().parents[2] / "crds"


def load_crd(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CRDS / name).read_text())
    return doc


def wasmapp_schema() -> dict[str, Any]:
    crd = load_crd("wasmlet.dev_wasmapps.yaml")
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _dataclass_of(annotation: Any) -> type[Any] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if dataclasses.is_dataclass(arg):
            return arg  # type: ignore[return-value]
        for inner in typing.get_args(arg):
            if dataclasses.is_dataclass(inner):
                return inner  # type: ignore[return-value]
    return None


def compare(cls: type[Any], schema: dict[str, Any], path: str, problems: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    props = schema.get("properties", {})
    fields = {model.camel(f.name): f for f in dataclasses.fields(cls)}
    for name in sorted(set(props) - set(fields)):
        problems.append(f"{path}.{name}: in the CRD, missing in {cls.__name__}")
    for name in sorted(set(fields) - set(props)):
        problems.append(f"{path}.{name}: in {cls.__name__}, missing in the CRD")
    for name in sorted(set(props) & set(fields)):
        f, prop = fields[name], props[name]
        if "default" in prop:
            default = f.default
            if prop["default"] == {} and f.default_factory is not dataclasses.MISSING:
                pass  # an object defaulted to {} so its own fields' defaults apply
            elif default is dataclasses.MISSING:
                problems.append(f"{path}.{name}: CRD default {prop['default']!r}, model has none")
            elif default != prop["default"]:
                problems.append(f"{path}.{name}: CRD default {prop['default']!r} != {default!r}")
        if "default" not in prop and f.default not in (dataclasses.MISSING, None, ()):
            nested = _dataclass_of(hints[f.name])
            if nested is None and not isinstance(f.default, dict):
                problems.append(f"{path}.{name}: model default {f.default!r}, CRD has none")
        required = name in schema.get("required", [])
        has_default = f.default is not dataclasses.MISSING or (
            f.default_factory is not dataclasses.MISSING
        )
        if required == has_default and "default" not in prop:
            problems.append(
                f"{path}.{name}: required in CRD={required}, model default={has_default}"
            )
        nested = _dataclass_of(hints[f.name])
        if nested is not None:
            sub = prop.get("items", prop)
            compare(nested, sub, f"{path}.{name}", problems)


def test_model_matches_crd_schema() -> None:
    problems: list[str] = []
    compare(model.WasmAppSpec, wasmapp_schema()["properties"]["spec"], "spec", problems)
    assert problems == []


def test_drift_check_catches_a_missing_field() -> None:
    """The comparison itself fails when the schema gains a field the model lacks."""
    schema = wasmapp_schema()["properties"]["spec"]
    schema["properties"]["newField"] = {"type": "string", "description": "x"}
    problems: list[str] = []
    compare(model.WasmAppSpec, schema, "spec", problems)
    assert problems == ["spec.newField: in the CRD, missing in WasmAppSpec"]


def test_drift_check_catches_a_changed_default() -> None:
    schema = wasmapp_schema()["properties"]["spec"]
    schema["properties"]["limits"]["properties"]["memory"]["default"] = "128Mi"
    problems: list[str] = []
    compare(model.WasmAppSpec, schema, "spec", problems)
    assert problems == ["spec.limits.memory: CRD default '128Mi' != '64Mi'"]


def _walk(schema: dict[str, Any], path: str) -> typing.Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("crd_file", sorted(p.name for p in CRDS.glob("wasmlet.dev_*.yaml")))
def test_every_field_has_a_description(crd_file: str) -> None:
    crd = load_crd(crd_file)
    missing = []
    for version in crd["spec"]["versions"]:
        for path, schema in _walk(version["schema"]["openAPIV3Schema"], version["name"]):
            if path.endswith(("{}", "[]")) or path == f"{version['name']}.metadata":
                # Map values and list items are described by their parent; the API server
                # forbids anything but the type on metadata.
                continue
            if not schema.get("description"):
                missing.append(path)
    assert missing == []
