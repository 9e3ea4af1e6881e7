"""The installed wasmlet version, for build-info metrics and `--version`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def wasmlet_version() -> str:
    try:
        return version("wasmlet")
    except PackageNotFoundError:  # a source tree without installed metadata
        return "unknown"
