"""What every module source returns and raises, so the agent can cache and report uniformly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from wasmlet.api.placements import Reason

__all__ = ["Reason"]

WASM_MAGIC = b"\0asm"
# Upper bound on a module's size unless the caller passes another one.
DEFAULT_MAX_MODULE_BYTES = 256 * 1024 * 1024


# Reasons a later attempt may fix without anyone changing the spec, a Secret or the source.
_RETRYABLE = frozenset(
    {Reason.SOURCE_UNREACHABLE, Reason.MODULE_NOT_FOUND, Reason.SOURCE_SERVER_ERROR}
)


class SourceError(Exception):
    """A module could not be had; `reason` goes to status and Events, the text says what to do."""

    reason: Reason = Reason.SOURCE_SERVER_ERROR

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    @property
    def retryable(self) -> bool:
        """True when retrying with back-off may succeed as things stand."""
        return self.reason in _RETRYABLE


class Unreachable(SourceError):
    reason = Reason.SOURCE_UNREACHABLE


class NotFound(SourceError):
    reason = Reason.MODULE_NOT_FOUND


class Unauthorized(SourceError):
    reason = Reason.UNAUTHORIZED


class NotWasm(SourceError):
    reason = Reason.NOT_WASM


class TooLarge(SourceError):
    reason = Reason.MODULE_TOO_LARGE


class NoWasmLayer(SourceError):
    reason = Reason.NO_WASM_LAYER


class InvalidSource(SourceError):
    reason = Reason.INVALID_SOURCE


class InvalidDigest(SourceError):
    reason = Reason.INVALID_DIGEST


class TLSError(SourceError):
    reason = Reason.TLS_ERROR


class ServerError(SourceError):
    reason = Reason.SOURCE_SERVER_ERROR


class Unsupported(SourceError):
    reason = Reason.UNSUPPORTED_FORMAT


@dataclass(frozen=True)
class ModuleBytes:
    """Module bytes as fetched, with their sha256 digest and where they came from."""

    data: bytes = field(repr=False)
    digest: str
    source: str
    # The manifest digest an OCI reference resolved to (what `repo@sha256:...` names).
    manifest_digest: str | None = None

    @classmethod
    def of(cls, data: bytes, source: str, manifest_digest: str | None = None) -> ModuleBytes:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return cls(data, digest, source, manifest_digest)

    @property
    def size(self) -> int:
        return len(self.data)


def check_wasm(data: bytes, what: str) -> None:
    """Raise NotWasm unless `data` starts with the Wasm magic (core module or component)."""
    if data[:4] == WASM_MAGIC:
        return
    head = data[:8]
    text = head.decode("ascii", "replace")
    shown = text if head.isascii() and text.isprintable() else ""
    printable = f" ({shown!r})" if shown else ""
    raise NotWasm(
        f"{what} is not a WebAssembly module: it starts with {head.hex(' ') or 'nothing'}"
        f"{printable} instead of 00 61 73 6d ('\\0asm'); point the source at a compiled .wasm "
        "file (not .wat text, an HTML page or an archive)"
    )


def check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise TooLarge(
            f"{what} is {size} bytes, over the limit of {limit} bytes; use a smaller module "
            "or raise the agent's module size limit"
        )
