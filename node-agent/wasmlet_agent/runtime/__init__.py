"""The node agent's Wasm runtime: one engine, precompiled modules, limited WASI instances."""

from wasmlet_agent.runtime.engine import EngineConfig, WasmEngine, engine_fingerprint
from wasmlet_agent.runtime.instances import (
    Cancel,
    InstanceResult,
    InstanceSpec,
    Outcome,
    Preopen,
    run_instance,
)
from wasmlet_agent.runtime.modules import LoadedModule, ModuleError

__all__ = [
    "Cancel",
    "EngineConfig",
    "InstanceResult",
    "InstanceSpec",
    "LoadedModule",
    "ModuleError",
    "Outcome",
    "Preopen",
    "WasmEngine",
    "engine_fingerprint",
    "run_instance",
]
