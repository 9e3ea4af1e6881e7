"""Names shared by the operator and the agents: API group, kinds, labels, enums."""

from __future__ import annotations

from enum import StrEnum

GROUP = "wasmlet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

WASMAPPS = "wasmapps"
WASMPLACEMENTS = "wasmplacements"
WASMNODES = "wasmnodes"
WASMAPPQUOTAS = "wasmappquotas"

SYSTEM_NAMESPACE = "wasmlet-system"

# Labels the operator puts on the objects it owns; the WasmApp scale selector uses APP_LABEL.
APP_LABEL = "wasmlet.dev/app"
NODE_LABEL = "wasmlet.dev/node"
# Set on a WasmNode by an administrator (never by the agent's own identity): when the node
# stops heartbeating its placements stay where they are (edge autonomy) instead of moving.
AUTONOMOUS_LABEL = "wasmlet.dev/autonomous"

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
    READY = "Ready"  # every desired instance is ready, whichever revision it runs
    AVAILABLE = "Available"  # ready instances within maxUnavailable of desired (Deployment's)
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    MODULE_AVAILABLE = "ModuleAvailable"


class NodeStatus(StrEnum):
    """A node as the operator sees it (WasmApp status.placements[].nodeStatus)."""

    READY = "Ready"  # heartbeating
    UNKNOWN = "Unknown"  # autonomous and not heartbeating: its instances are kept, unconfirmed
    LOST = "Lost"  # not heartbeating and not autonomous: its instances move elsewhere


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"
