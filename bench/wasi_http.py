"""The `wasmtime serve` baseline: the CGI guest's echo as a wasi:http component.

`wasmtime serve` is the wasmtime CLI's own wasi:http server; with a WASIp2 component it makes a
fresh instance per request, as the agent does. bench/guests/http_echo.c answers like the `cgi`
guest (dev/wasmlet_dev/guests/src/cgi.c): the same body, Content-Type and stderr line. It is
built from source here: WIT from the crates.io crate `wasmtime-wasi-http` (pinned, sha256
checked), C bindings from `wit-bindgen c` for the `wasi:http/proxy` world, clang + wasi-libc
as for the test guests, and `wasm-tools component new` with the preview1 *proxy* adapter from
the crate the test guests already pin (dev/wasmlet_dev/guests/adapter/Cargo.toml).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from bench.common import BENCH_DIR, CACHE
from wasmlet_dev.guests.build import (
    C_FLAGS,
    GuestBuildError,
    _adapter,
    _clang_toolchain,
    _run,
    _stat_id,
    _wasi_sysroot,
    _wasm_tools,
)

SOURCE = BENCH_DIR / "guests" / "http_echo.c"
NAME = "http_echo"

# The WIT of wasi:http 0.2.6, as wasmtime 40 ships it; the same WASI version (0.2.6) as the
# preview1 adapter 40.0.0, so the adapter's wasi:io/wasi:cli imports merge with the guest's.
WIT_CRATE = "wasmtime-wasi-http"
WIT_CRATE_VERSION = "40.0.0"
WIT_CRATE_SHA256 = "41f197ddcf9e18ef9f0e3873e690f43231aa85805911d99b6aa8ed5b13dcfdf4"
CRATES_DL = "https://static.crates.io/crates"
WIT_CRATE_URL = f"{CRATES_DL}/{WIT_CRATE}/{WIT_CRATE}-{WIT_CRATE_VERSION}.crate"
WORLD = "wasi:http/proxy@0.2.6"
BINDINGS = "proxy"  # wit-bindgen c names its files after the world: proxy.{c,h}, ...

WIT_BINDGEN_VERSION = "0.63.0"
# Where ensure_wit_bindgen (run by hack/bench-deps.sh and the tests) installs it.
CARGO_ROOT = CACHE.parent / "cargo"
INSTALL_HINT = (
    f"run `bash hack/bench-deps.sh` (it runs `cargo install --locked --root {CARGO_ROOT} "
    f"wit-bindgen-cli@{WIT_BINDGEN_VERSION}`)"
)


def ensure_wit_bindgen() -> Path:
    """wit-bindgen-cli WIT_BINDGEN_VERSION, built with cargo into CARGO_ROOT if missing (a
    few minutes, once per machine); raises naming what to install when cargo is missing."""
    try:
        return _wit_bindgen_checked()
    except GuestBuildError:
        pass
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).is_file():
        raise GuestBuildError(
            "cargo not found (it builds wit-bindgen for the `wasmtime serve` guest): install "
            "Rust's cargo (rustup or the Debian package `cargo`)"
        )
    cmd = [cargo, "install", "--quiet", "--locked", "--root", str(CARGO_ROOT),
           f"wit-bindgen-cli@{WIT_BINDGEN_VERSION}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GuestBuildError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return _wit_bindgen_checked()


PROXY_ADAPTER_FILE = "wasi_snapshot_preview1.proxy.wasm"
# No main: the component exports wasi:http/incoming-handler, so the core module is a reactor;
# `wasm-tools component new` makes its _initialize (wasi-libc's constructors) the start function.
EXTRA_C_FLAGS = ("-mexec-model=reactor",)


def wit_bindgen() -> Path:
    """wit-bindgen from hack/bench-deps.sh's cargo root, else from PATH."""
    installed = CARGO_ROOT / "bin" / "wit-bindgen"
    if installed.is_file():
        return installed
    found = shutil.which("wit-bindgen")
    if found is None:
        raise GuestBuildError(
            f"wit-bindgen not found (in {installed.parent} or on PATH): {INSTALL_HINT}"
        )
    return Path(found)


def _wit_bindgen_checked() -> Path:
    binary = wit_bindgen()
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    version = proc.stdout.strip()
    if proc.returncode != 0 or WIT_BINDGEN_VERSION not in version.split():
        raise GuestBuildError(
            f"{binary} is {version or 'broken'!r}, not wit-bindgen-cli {WIT_BINDGEN_VERSION} "
            f"(its C bindings differ between versions): {INSTALL_HINT}"
        )
    return binary


def wit_dir() -> Path:
    """The crate's wit/ tree (wasi:http and its deps), downloaded and checked once."""
    dest = CACHE / "wit" / f"{WIT_CRATE}-{WIT_CRATE_VERSION}"
    if (dest / "deps" / "http" / "proxy.wit").is_file():
        return dest
    try:
        with urllib.request.urlopen(WIT_CRATE_URL, timeout=120) as resp:
            data: bytes = resp.read()
    except (urllib.error.URLError, OSError) as err:
        raise GuestBuildError(f"cannot download {WIT_CRATE_URL}: {err}") from err
    digest = hashlib.sha256(data).hexdigest()
    if digest != WIT_CRATE_SHA256:
        raise GuestBuildError(
            f"{WIT_CRATE_URL} has sha256 {digest}, expected {WIT_CRATE_SHA256} (crates.io index)"
        )
    prefix = f"{WIT_CRATE}-{WIT_CRATE_VERSION}/wit/"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Extract beside dest and rename, so an interrupted download never leaves half a tree.
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            tar.extractall(tmp, members=members, filter="data")
        extracted = Path(tmp) / prefix
        if not (extracted / "deps" / "http" / "proxy.wit").is_file():
            raise GuestBuildError(f"{WIT_CRATE_URL} has no wit/deps/http/proxy.wit")
        if not dest.exists():
            extracted.rename(dest)
    return dest


def _proxy_adapter() -> Path:
    adapter = _adapter().with_name(PROXY_ADAPTER_FILE)
    if not adapter.is_file():
        raise GuestBuildError(
            f"no {PROXY_ADAPTER_FILE} beside {adapter.parent / '...command.wasm'}: the crate "
            "`wasi-preview1-component-adapter-provider` ships it (unset WASI_ADAPTER if set)"
        )
    return adapter


def build_http_echo(out_dir: Path) -> Path:
    """bench/guests/http_echo.c as a wasi:http/proxy component in out_dir; its path.

    Keyed by a hash of the source, this builder, the WIT crate and every tool's identity, so a
    rerun with nothing changed only stats and asks the tools for their versions.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    bindgen = ensure_wit_bindgen()
    compiler = _clang_toolchain(out_dir)  # checks clang, wasm-ld, wasi-libc: names packages
    clang = shutil.which("clang") or shutil.which("clang-14")
    assert clang is not None  # _clang_toolchain raised otherwise
    wasm_tools = _wasm_tools()
    adapter = _proxy_adapter()
    wasm_tools_version = subprocess.run(
        [wasm_tools, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    flags = (*C_FLAGS, f"--sysroot={_wasi_sysroot()}", *EXTRA_C_FLAGS)
    parts = [
        SOURCE.read_bytes(),
        Path(__file__).read_bytes(),
        WIT_CRATE_SHA256.encode(),
        _stat_id(bindgen.resolve()).encode(),
        compiler.fingerprint.encode(),
        wasm_tools_version.encode(),
        hashlib.sha256(adapter.read_bytes()).hexdigest().encode(),
        " ".join(flags).encode(),
    ]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()
    out, stamp = out_dir / f"{NAME}.wasm", out_dir / f"{NAME}.key"
    if out.is_file() and stamp.is_file() and stamp.read_text() == key:
        return out
    wit = wit_dir()
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp_dir:
        tmp = Path(tmp_dir)
        gen = tmp / "bindings"
        core = tmp / f"{NAME}.core.wasm"
        component = tmp / f"{NAME}.wasm"
        _run([str(bindgen), "c", "--world", WORLD, "--out-dir", str(gen), str(wit)])
        _run(
            [
                clang,
                *flags,
                "-I",
                str(gen),
                str(SOURCE),
                str(gen / f"{BINDINGS}.c"),
                str(gen / f"{BINDINGS}_component_type.o"),
                "-o",
                str(core),
            ]
        )
        _run(
            [
                wasm_tools,
                "component",
                "new",
                str(core),
                "--adapt",
                f"wasi_snapshot_preview1={adapter}",
                "-o",
                str(component),
            ]
        )
        _run([wasm_tools, "validate", str(component)])
        component.replace(out)
    stamp.write_text(key)
    return out


def serve_cmd(wasmtime: Path, component: Path, port: int) -> list[str]:
    """`wasmtime serve` on 127.0.0.1:port, a fresh instance per request (the WASIp2 default,
    pinned), the guest's stderr lines unprefixed on wasmtime's stderr as the agent logs them."""
    return [
        str(wasmtime),
        "serve",
        "--addr",
        f"127.0.0.1:{port}",
        "--max-instance-reuse-count",
        "1",
        "--no-logging-prefix",
        str(component),
    ]
