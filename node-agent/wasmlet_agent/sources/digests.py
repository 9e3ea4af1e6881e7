"""sha256 content digests: the one identity of module bytes from pull to cache to run."""

from __future__ import annotations

import hashlib
import re

from wasmlet_agent.sources.base import InvalidDigest, Reason, SourceError

ALGORITHM = "sha256"
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


class DigestMismatch(SourceError):
    """The bytes are not the ones asked for; they are never cached or run."""

    reason = Reason.DIGEST_MISMATCH

    def __init__(self, expected: str, actual: str, what: str) -> None:
        super().__init__(
            f"digest mismatch for {what}: expected {expected}, got {actual}; the content "
            "changed or was corrupted in transit — if the new content is intended, update "
            "the expected digest"
        )
        self.expected = expected
        self.actual = actual
        self.what = what


def parse_digest(value: str, what: str = "digest") -> str:
    """Return `value` if it is `sha256:<64 lowercase hex>`, else raise InvalidDigest."""
    if DIGEST_RE.match(value):
        return value
    hint = ""
    if DIGEST_RE.match(value.lower()):
        hint = " (use lowercase hex)"
    elif re.fullmatch(r"[a-fA-F0-9]{64}", value):
        hint = " (add the sha256: prefix)"
    elif ":" in value and not value.startswith("sha256:"):
        hint = f" (only sha256 is supported, not {value.split(':', 1)[0]})"
    raise InvalidDigest(
        f"{what} {value!r} is not a digest: expected sha256: followed by 64 lowercase hex "
        f"digits{hint}"
    )


def is_digest(value: str) -> bool:
    return bool(DIGEST_RE.match(value))


def compute_digest(data: bytes) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def hex_of(digest: str) -> str:
    """The hex part of a valid digest (for file names)."""
    return parse_digest(digest)[len(ALGORITHM) + 1 :]


def verify_digest(data: bytes, expected: str, what: str) -> str:
    """Return the digest of `data` if it equals `expected`, else raise DigestMismatch."""
    expected = parse_digest(expected, f"expected digest of {what}")
    actual = compute_digest(data)
    if actual != expected:
        raise DigestMismatch(expected, actual, what)
    return actual
