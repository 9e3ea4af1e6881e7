"""The environment a guest sees: only what spec.env gives it, resolved from its sources."""

from __future__ import annotations

from wasmlet.api.spec import WasmAppSpec
from wasmlet_agent.objects import ConfigError, ObjectLookup, config_map_files, secret_files


def resolve_env(spec: WasmAppSpec, namespace: str, lookup: ObjectLookup) -> dict[str, str]:
    """spec.env as a dict; raises ConfigError naming the entry that cannot be resolved."""
    env: dict[str, str] = {}
    for i, var in enumerate(spec.env):
        path = f"spec.env[{i}]"
        if var.value is not None:
            env[var.name] = var.value
            continue
        source = var.value_from
        assert source is not None  # the schema requires value or valueFrom
        if source.config_map_key_ref is not None:
            ref, kind = source.config_map_key_ref, "ConfigMap"
            obj = lookup.config_map(namespace, ref.name)
            files = config_map_files(obj) if obj is not None else None
            path += ".valueFrom.configMapKeyRef"
        else:
            assert source.secret_key_ref is not None
            ref, kind = source.secret_key_ref, "Secret"
            obj = lookup.secret(namespace, ref.name)
            files = secret_files(obj) if obj is not None else None
            path += ".valueFrom.secretKeyRef"
        if files is None:
            raise ConfigError(path, f"{kind} {namespace}/{ref.name} not found; create it")
        if ref.key not in files:
            keys = ", ".join(sorted(files)) or "none"
            raise ConfigError(
                path, f"{kind} {namespace}/{ref.name} has no key {ref.key!r} (keys: {keys})"
            )
        env[var.name] = files[ref.key].decode("utf-8", errors="replace")
    return env
