"""The node agent's Wasm runtime: one engine, precompiled modules, limited WASI instances."""

from wasmlet_agent.runtime.engine import EngineConfig, WasmEngine, engine_fingerprint
from wasmlet_agent.runtime.instances import (
    Cancel,
    InstanceResult,
    InstanceSpec,
    Outcome,
    Preopen,
    network_capabilities,
    run_instance,
)
from wasmlet_agent.runtime.modules import LoadedComponent, LoadedModule, ModuleError

__all__ = [
    "Cancel",
    "EngineConfig",
    "InstanceResult",
    "InstanceSpec",
    "LoadedComponent",
    "LoadedModule",
    "ModuleError",
    "Outcome",
    "Preopen",
    "WasmEngine",
    "engine_fingerprint",
    "network_capabilities",
    "run_instance",
]
