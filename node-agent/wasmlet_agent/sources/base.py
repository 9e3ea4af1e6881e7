"""What every module source returns and raises, so the agent can cache and report uniformly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

WASM_MAGIC = b"\0asm"
# Upper bound on a module's size unless the caller passes another one.
DEFAULT_MAX_MODULE_BYTES = 256 * 1024 * 1024


class Reason(StrEnum):
    """Why a module could not be had; CamelCase values fit a Kubernetes condition reason."""

    UNREACHABLE = "SourceUnreachable"
    NOT_FOUND = "ModuleNotFound"
    UNAUTHORIZED = "Unauthorized"
    DIGEST_MISMATCH = "DigestMismatch"
    NOT_WASM = "NotWasm"
    TOO_LARGE = "ModuleTooLarge"
    NO_WASM_LAYER = "NoWasmLayer"
    INVALID_SOURCE = "InvalidSource"
    INVALID_DIGEST = "InvalidDigest"
    TLS_ERROR = "TLSError"
    SERVER_ERROR = "SourceServerError"
    UNSUPPORTED = "UnsupportedFormat"


# Reasons a later attempt may fix without anyone changing the spec, a Secret or the source.
_RETRYABLE = frozenset({Reason.UNREACHABLE, Reason.NOT_FOUND, Reason.SERVER_ERROR})


class SourceError(Exception):
    """A module could not be had; `reason` goes to status and Events, the text says what to do."""

    reason: Reason = Reason.SERVER_ERROR

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
    reason = Reason.UNREACHABLE


class NotFound(SourceError):
    reason = Reason.NOT_FOUND


class Unauthorized(SourceError):
    reason = Reason.UNAUTHORIZED


class NotWasm(SourceError):
    reason = Reason.NOT_WASM


class TooLarge(SourceError):
    reason = Reason.TOO_LARGE


class NoWasmLayer(SourceError):
    reason = Reason.NO_WASM_LAYER


class InvalidSource(SourceError):
    reason = Reason.INVALID_SOURCE


class InvalidDigest(SourceError):
    reason = Reason.INVALID_DIGEST


class TLSError(SourceError):
    reason = Reason.TLS_ERROR


class ServerError(SourceError):
    reason = Reason.SERVER_ERROR


class Unsupported(SourceError):
    reason = Reason.UNSUPPORTED


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
