"""Names shared by the operator and the agents: API group, kinds, labels, enums."""

from __future__ import annotations

from enum import StrEnum

GROUP = "wasmlet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

WASMAPPS = "wasmapps"
WASMPLACEMENTS = "wasmplacements"
WASMNODES = "wasmnodes"

SYSTEM_NAMESPACE = "wasmlet-system"

# Labels the operator puts on the objects it owns; the WasmApp scale selector uses APP_LABEL.
APP_LABEL = "wasmlet.dev/app"
NODE_LABEL = "wasmlet.dev/node"

# wasm32 linear memory cannot grow past 4 GiB.
MAX_MEMORY_BYTES = 4 * 1024**3


class Mode(StrEnum):
    COMMAND = "command"
    HTTP = "http"


class RestartPolicy(StrEnum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    MODULE_AVAILABLE = "ModuleAvailable"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"
