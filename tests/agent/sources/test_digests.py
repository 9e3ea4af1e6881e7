"""Digest parsing and verification: the identity every other part relies on."""

from __future__ import annotations

import hashlib

import pytest

from wasmlet_agent.sources import DigestMismatch, InvalidDigest, Reason
from wasmlet_agent.sources.digests import compute_digest, hex_of, parse_digest, verify_digest

GOOD = "sha256:" + "ab" * 32


def test_compute_matches_hashlib() -> None:
    assert compute_digest(b"hello") == "sha256:" + hashlib.sha256(b"hello").hexdigest()


def test_parse_accepts_canonical() -> None:
    assert parse_digest(GOOD) == GOOD
    assert hex_of(GOOD) == "ab" * 32


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("sha256:" + "AB" * 32, "lowercase"),
        ("ab" * 32, "sha256: prefix"),
        ("sha512:" + "ab" * 64, "only sha256"),
        ("sha256:" + "ab" * 31, ""),
        ("sha256:" + "zz" * 32, ""),
        ("", ""),
    ],
)
def test_parse_rejects_with_hint(value: str, hint: str) -> None:
    with pytest.raises(InvalidDigest) as info:
        parse_digest(value, "spec.module.digest")
    assert info.value.reason is Reason.INVALID_DIGEST
    assert "spec.module.digest" in str(info.value)
    assert hint in str(info.value)
    assert not info.value.retryable


def test_verify_returns_digest_or_raises_with_both_values() -> None:
    data = b"\0asm\x01\0\0\0"
    assert verify_digest(data, compute_digest(data), "m") == compute_digest(data)
    with pytest.raises(DigestMismatch) as info:
        verify_digest(data, GOOD, "module m")
    err = info.value
    assert (err.expected, err.actual) == (GOOD, compute_digest(data))
    assert err.reason is Reason.DIGEST_MISMATCH and not err.retryable
    assert GOOD in str(err) and compute_digest(data) in str(err) and "module m" in str(err)
