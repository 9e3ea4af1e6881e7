"""The one place an app's spec becomes what a single instance gets (an InstanceSpec)."""

from __future__ import annotations

import os
from pathlib import Path

from wasmlet.api.constants import Mode
from wasmlet.api.spec import WasmAppSpec
from wasmlet_agent.environment import resolve_env
from wasmlet_agent.host_paths import HostPathPolicy
from wasmlet_agent.objects import ObjectLookup
from wasmlet_agent.runtime.instances import InstanceSpec, Preopen, Sink
from wasmlet_agent.volumes import prepare_mounts


def build_instance_spec(
    spec: WasmAppSpec,
    namespace: str,
    app: str,
    directory: Path,
    lookup: ObjectLookup,
    *,
    stdout: Sink | None,
    stderr: Sink | None,
    host_paths: HostPathPolicy | None = None,
) -> InstanceSpec:
    """Env and volumes resolved now (raises ConfigError naming the field), limits per mode.

    A command instance gets its own directory and `limits.timeoutSeconds`; an HTTP revision
    builds one template for all its requests, bounded by `limits.requestTimeoutSeconds`, and
    its stdout is the CGI response, so it passes no stdout sink.
    """
    env = resolve_env(spec, namespace, lookup)
    preopens = prepare_mounts(spec, namespace, directory, lookup, host_paths)
    limits = spec.limits
    if spec.mode is Mode.HTTP:
        timeout: float | None = float(limits.request_timeout_seconds)
    else:
        timeout = limits.timeout_seconds or None
    return InstanceSpec(
        args=spec.args,
        env=env,
        preopens=[Preopen(os.fspath(p.host_path), p.guest_path, p.writable) for p in preopens],
        memory_limit_bytes=limits.memory_bytes,
        timeout_seconds=timeout,
        fuel=limits.fuel,
        stdout=stdout,
        stderr=stderr,
        program_name=app,
        network=spec.network.outbound,
    )
