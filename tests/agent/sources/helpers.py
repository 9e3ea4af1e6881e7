"""Real Wasm bytes for the source and cache tests."""

from __future__ import annotations

import wasmtime


def wasm_module(label: str) -> bytes:
    """A valid core module, distinct per label (so digests differ between tests)."""
    return wasmtime.wat2wasm(f'(module (func (export "{label}")))')


def leb128(n: int) -> bytes:
    """Unsigned LEB128, as Wasm encodes section sizes."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def big_wasm_module(label: str, size: int) -> bytes:
    """A valid module of exactly `size` bytes, padded with a custom section."""
    base = wasm_module(label)
    name = b"pad"
    for width in range(1, 6):
        zeros = size - len(base) - 1 - width - 1 - len(name)
        payload = leb128(len(name)) + name + bytes(max(zeros, 0))
        if zeros >= 0 and len(leb128(len(payload))) == width:
            return base + b"\x00" + leb128(len(payload)) + payload
    raise ValueError(f"cannot pad a module to {size} bytes")


def with_custom_section(wasm: bytes, name: str, data: bytes) -> bytes:
    """A module that behaves as `wasm` but has another digest (a custom section is ignored)."""
    payload = leb128(len(name)) + name.encode() + data
    return wasm + b"\x00" + leb128(len(payload)) + payload
