"""Where module bytes come from (OCI registry, http(s) URL, ConfigMap), each verified by digest."""

from wasmlet_agent.sources.base import (
    DEFAULT_MAX_MODULE_BYTES,
    InvalidDigest,
    InvalidSource,
    ModuleBytes,
    NotFound,
    NotWasm,
    NoWasmLayer,
    Reason,
    ServerError,
    SourceError,
    TLSError,
    TooLarge,
    Unauthorized,
    Unreachable,
    Unsupported,
    check_wasm,
)
from wasmlet_agent.sources.configmap import module_from_configmap
from wasmlet_agent.sources.digests import (
    DigestMismatch,
    compute_digest,
    parse_digest,
    verify_digest,
)
from wasmlet_agent.sources.http import fetch_http
from wasmlet_agent.sources.oci import DockerConfig, OciClient, ResolvedModule, pull
from wasmlet_agent.sources.references import Reference, parse_reference

__all__ = [
    "DEFAULT_MAX_MODULE_BYTES",
    "DigestMismatch",
    "DockerConfig",
    "InvalidDigest",
    "InvalidSource",
    "ModuleBytes",
    "NoWasmLayer",
    "NotFound",
    "NotWasm",
    "OciClient",
    "Reason",
    "Reference",
    "ResolvedModule",
    "ServerError",
    "SourceError",
    "TLSError",
    "TooLarge",
    "Unauthorized",
    "Unreachable",
    "Unsupported",
    "check_wasm",
    "compute_digest",
    "fetch_http",
    "module_from_configmap",
    "parse_digest",
    "parse_reference",
    "pull",
    "verify_digest",
]
