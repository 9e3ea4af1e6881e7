"""Builds the test guests from source, so every Wasm binary a test runs is reproducible here."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

SRC_DIR = Path(__file__).resolve().parent / "src"

C_FLAGS = ("--target=wasm32-wasi", "-O2", "-Wall", "-Wextra", "-Wl,--strip-debug")
GO_FLAGS = ("-trimpath",)

# Guest name -> source file; the builder is chosen by the suffix.
GUESTS: dict[str, str] = {
    "hello": "hello.c",
    "exit": "exit.c",
    "loop": "loop.c",
    "long": "long.c",
    "memhog": "memhog.c",
    "files": "files.c",
    "envdump": "envdump.c",
    "cgi": "cgi.c",
    "gohello": "gohello.go",
    "trap": "trap.wat",
    "nowasi": "nowasi.wat",
    "missing_import": "missing_import.wat",
    "memgrow": "memgrow.wat",
}


class GuestBuildError(RuntimeError):
    """A guest could not be built; the message names the missing tool and its package."""


@dataclass(frozen=True)
class _Toolchain:
    """One compiler: how to identify it (for the cache key) and how to run it."""

    fingerprint: str
    build: Callable[[Path, Path], None]


def _stat_id(path: Path) -> str:
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise GuestBuildError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )


def _wasi_sysroot_candidates() -> list[str]:
    """$WASI_SYSROOT, wasi-sdk's layout, then Debian's multiarch /usr/include/wasm32-wasi."""
    return [os.environ.get("WASI_SYSROOT", ""), "/usr/share/wasi-sysroot", "/usr"]


def _wasi_sysroot() -> Path:
    for candidate in filter(None, _wasi_sysroot_candidates()):
        root = Path(candidate)
        for include in (root / "include" / "wasm32-wasi", root / "include"):
            if (include / "wasi" / "api.h").is_file():
                return root
    raise GuestBuildError(
        "wasi-libc not found (looked for wasi/api.h under $WASI_SYSROOT, "
        "/usr/share/wasi-sysroot and /usr/include/wasm32-wasi): "
        "install the Debian package `wasi-libc` or set WASI_SYSROOT to a wasi-sdk sysroot"
    )


def _clang_toolchain(out_dir: Path) -> _Toolchain:
    clang = shutil.which("clang") or shutil.which("clang-14")
    if clang is None:
        raise GuestBuildError(
            "clang not found on PATH: install the Debian packages "
            "`clang lld wasi-libc libclang-rt-14-dev-wasm32`"
        )
    wasm_ld = shutil.which("wasm-ld") or shutil.which("wasm-ld-14")
    if wasm_ld is None:
        raise GuestBuildError("wasm-ld not found on PATH: install the Debian package `lld`")
    sysroot = _wasi_sysroot()
    libc = next(
        (
            p
            for p in (sysroot / "lib" / "wasm32-wasi" / "libc.a", sysroot / "lib" / "libc.a")
            if p.is_file()
        ),
        None,
    )
    if libc is None:
        raise GuestBuildError(
            f"libc.a for wasm32-wasi not found under {sysroot}: install `wasi-libc`"
        )
    flags = (*C_FLAGS, f"--sysroot={sysroot}")

    def build(src: Path, out: Path) -> None:
        try:
            _run([clang, *flags, str(src), "-o", str(out)])
        except GuestBuildError as err:
            if "libclang_rt.builtins-wasm32" in str(err):
                raise GuestBuildError(
                    "clang's wasm32 runtime library is missing: install the Debian package "
                    f"`libclang-rt-14-dev-wasm32`\n{err}"
                ) from err
            raise

    fingerprint = "|".join(
        [_stat_id(Path(clang).resolve()), _stat_id(Path(wasm_ld).resolve()), _stat_id(libc), *flags]
    )
    return _Toolchain(fingerprint, build)


def _go_toolchain(out_dir: Path) -> _Toolchain:
    go = shutil.which("go")
    if go is None:
        raise GuestBuildError(
            "go not found on PATH: install Go >= 1.21 (GOOS=wasip1), e.g. the Debian package "
            "`golang-1.22-go` from bookworm-backports, or a release from go.dev/dl"
        )
    goroot = Path(go).resolve().parent.parent
    version_file = goroot / "VERSION"
    version = version_file.read_text().splitlines()[0] if version_file.is_file() else ""
    env = {
        **os.environ,
        "GOOS": "wasip1",
        "GOARCH": "wasm",
        "CGO_ENABLED": "0",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "",
        "GO111MODULE": "on",
    }
    if not any(k in os.environ for k in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(out_dir / ".go-build")  # go refuses to run without a cache dir
        env["GOPATH"] = str(out_dir / ".go-path")

    def build(src: Path, out: Path) -> None:
        _run([go, "build", *GO_FLAGS, "-o", str(out), str(src)], env=env)

    fingerprint = "|".join([_stat_id(Path(go).resolve()), version, *GO_FLAGS])
    return _Toolchain(fingerprint, build)


def _wat_toolchain(out_dir: Path) -> _Toolchain:
    import wasmtime  # the runtime under test already depends on it

    def build(src: Path, out: Path) -> None:
        out.write_bytes(wasmtime.wat2wasm(src.read_text()))

    return _Toolchain(f"wasmtime.wat2wasm {metadata.version('wasmtime')}", build)


_TOOLCHAINS: dict[str, Callable[[Path], _Toolchain]] = {
    ".c": _clang_toolchain,
    ".go": _go_toolchain,
    ".wat": _wat_toolchain,
}


def build_guests(out_dir: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Compiles the guests (all, or `names`) into out_dir and returns name -> .wasm path.

    Each output is keyed by a hash of its source, this builder and the toolchain's identity, so a
    rerun with nothing changed only stats files.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    builder_hash = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    toolchains: dict[str, _Toolchain] = {}
    built: dict[str, Path] = {}
    for name in names if names is not None else list(GUESTS):
        src = SRC_DIR / GUESTS[name]
        suffix = src.suffix
        if suffix not in toolchains:
            toolchains[suffix] = _TOOLCHAINS[suffix](out_dir)
        toolchain = toolchains[suffix]
        key = hashlib.sha256(
            b"\0".join([src.read_bytes(), builder_hash.encode(), toolchain.fingerprint.encode()])
        ).hexdigest()
        out = out_dir / f"{name}.wasm"
        stamp = out_dir / f"{name}.key"
        if out.is_file() and stamp.is_file() and stamp.read_text() == key:
            built[name] = out
            continue
        # Build into a temp file and rename, so an interrupted build never leaves a bad cache.
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            tmp_out = Path(tmp) / out.name
            toolchain.build(src, tmp_out)
            tmp_out.replace(out)
        stamp.write_text(key)
        built[name] = out
    return built


def main(argv: list[str]) -> int:
    out_dir = (
        Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[2] / ".cache/guests"
    )
    try:
        guests = build_guests(out_dir)
    except GuestBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in guests.items():
        print(f"{name:16} {path.stat().st_size:>9} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
