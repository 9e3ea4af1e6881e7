"""What the agent and its HTTP serving processes say to each other, as plain JSON (pure).

The agent sends each serving process one `app` message per HTTP app whenever the app's
listener or serving revision changes, with the listening socket (and the module's verified
artifact, as a sealed memfd) attached as file descriptors; `drop` stops an app. A process
answers `ack` once it serves what it was sent, and forwards the guests' stderr as `stderr`.
Nothing in a message is run or evaluated: env values and paths are data for the instance.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from wasmlet_agent.revision import AppKey
from wasmlet_agent.runtime.instances import InstanceSpec, Preopen

# One datagram of the control channel (SOCK_SEQPACKET): far below the socket buffer.
MAX_MESSAGE_BYTES = 256 * 1024
STDERR_CHUNK_BYTES = 64 * 1024  # base64 of this fits one message


@dataclass(frozen=True)
class ServingState:
    """An app's serving revision as a serving process needs it: no callables, no objects."""

    revision: str
    digest: str
    fingerprint: str  # the engine the artifact was compiled for
    template: dict[str, Any]  # `template_to_wire` of the per-request InstanceSpec
    max_concurrency: int
    request_timeout_seconds: float


def template_to_wire(spec: InstanceSpec) -> dict[str, Any]:
    """The per-request template without its sinks (stderr comes back as messages)."""
    return {
        "args": list(spec.args),
        "env": dict(spec.env),
        "preopens": [[str(p.host_path), p.guest_path, bool(p.writable)] for p in spec.preopens],
        "memory_limit_bytes": spec.memory_limit_bytes,
        "timeout_seconds": spec.timeout_seconds,
        "fuel": spec.fuel,
        "program_name": spec.program_name,
        "network": spec.network,
        "stderr": spec.stderr is not None,
    }


def template_from_wire(data: dict[str, Any]) -> tuple[InstanceSpec, bool]:
    """(the InstanceSpec, whether its stderr is wanted); the inverse of `template_to_wire`."""
    spec = InstanceSpec(
        args=tuple(str(a) for a in data["args"]),
        env={str(k): str(v) for k, v in data["env"].items()},
        preopens=tuple(Preopen(str(h), str(g), bool(w)) for h, g, w in data["preopens"]),
        memory_limit_bytes=data["memory_limit_bytes"],
        timeout_seconds=data["timeout_seconds"],
        fuel=data["fuel"],
        program_name=str(data["program_name"]),
        network=bool(data["network"]),
    )
    return spec, bool(data["stderr"])


def app_message(
    key: AppKey,
    slot: int,
    port: int,
    max_concurrency: int,
    state: ServingState | None,
    with_artifact: bool,
    refusal: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """`slot` is the app's row of the shared counts; `max_concurrency` is the desired
    spec's, which sizes the app's worker threads. `refusal` (status, body), with no state:
    the agent's revision refuses requests for a reason of its own (a full emptyDir), and the
    processes answer so too."""
    serving = None
    if state is not None:
        serving = {
            "revision": state.revision,
            "digest": state.digest,
            "fingerprint": state.fingerprint,
            "template": state.template,
            "max_concurrency": state.max_concurrency,
            "request_timeout_seconds": state.request_timeout_seconds,
            "artifact": with_artifact,  # the second fd, when the process lacks the module
        }
    return {"op": "app", "key": list(key), "slot": slot, "port": port,
            "max_concurrency": max_concurrency, "serving": serving,
            "refusal": list(refusal) if refusal is not None else None}  # fmt: skip


def state_from_message(serving: dict[str, Any] | None) -> ServingState | None:
    if serving is None:
        return None
    return ServingState(
        revision=str(serving["revision"]),
        digest=str(serving["digest"]),
        fingerprint=str(serving["fingerprint"]),
        template=dict(serving["template"]),
        max_concurrency=int(serving["max_concurrency"]),
        request_timeout_seconds=float(serving["request_timeout_seconds"]),
    )


def stderr_messages(key: AppKey, revision: str, data: bytes) -> list[dict[str, Any]]:
    """A guest's stderr split into messages that each fit one datagram."""
    return [
        {"op": "stderr", "key": list(key), "revision": revision,
         "data": base64.b64encode(data[i : i + STDERR_CHUNK_BYTES]).decode()}
        for i in range(0, len(data), STDERR_CHUNK_BYTES)
    ]  # fmt: skip


def encode(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"control message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return data


def decode(data: bytes) -> dict[str, Any]:
    """A message, or ValueError for anything that is not a JSON object with an `op`."""
    message = json.loads(data)
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ValueError("control message is not an object with an op")
    return message


def key_of(message: dict[str, Any]) -> AppKey:
    ns, app = message["key"]
    return str(ns), str(app)
