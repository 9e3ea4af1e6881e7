"""Building C sources into Wasm modules with Debian's clang and wasi-libc (example modules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

C_FLAGS = ("--target=wasm32-wasi", "-O2", "-Wall", "-Wl,--strip-debug")


class BuildError(RuntimeError):
    pass


def wasi_sysroot() -> Path:
    for candidate in (Path("/usr/share/wasi-sysroot"), Path("/usr")):
        if (candidate / "include" / "wasm32-wasi").is_dir() or (
            candidate / "lib" / "wasm32-wasi"
        ).is_dir():
            return candidate
    raise BuildError("wasi-libc not found: install the Debian packages wasi-libc and clang lld")


def build_c(source: Path, out: Path) -> Path:
    """Compile one C file to a WASI module (rebuilt only when the source is newer)."""
    if out.exists() and out.stat().st_mtime >= source.stat().st_mtime:
        return out
    clang = shutil.which("clang") or shutil.which("clang-14")
    if clang is None:
        raise BuildError("clang not found: install clang lld wasi-libc libclang-rt-14-dev-wasm32")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [clang, *C_FLAGS, f"--sysroot={wasi_sysroot()}", str(source), "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"building {source.name} failed:\n{result.stderr}")
    return out
