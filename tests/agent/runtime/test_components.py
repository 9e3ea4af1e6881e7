"""WASI 0.2 components: the same InstanceSpec semantics as core modules, plus the network flag.

The guests are the core C/Go sources adapted with the preview1 command adapter (see
wasmlet_dev/guests/build.py); `connect_component` calls wasi:sockets directly.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.guests import GUEST_CACHE
from wasmlet_agent.runtime import (
    Cancel,
    InstanceResult,
    InstanceSpec,
    LoadedModule,
    Outcome,
    Preopen,
    WasmEngine,
    run_instance,
)
from wasmlet_agent.runtime.instances import network_capabilities
from wasmlet_agent.runtime.modules import LoadedComponent, ModuleError
from wasmlet_agent.runtime.usage import Usage
from wasmlet_dev.guests.build import COMPONENTS, GuestBuildError, build_guests

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def components() -> dict[str, Path]:
    try:
        return build_guests(GUEST_CACHE, list(COMPONENTS))
    except GuestBuildError as err:
        pytest.fail(f"cannot build the component guests: {err}", pytrace=False)


@pytest.fixture(scope="session")
def comp(engine: WasmEngine, components: dict[str, Path]) -> Callable[[str], LoadedModule]:
    cache: dict[str, LoadedModule] = {}

    def get(name: str) -> LoadedModule:
        if name not in cache:
            cache[name] = LoadedModule.from_file(engine, components[name])
        return cache[name]

    return get


Comp = Callable[[str], LoadedModule]


def run(
    module: LoadedModule, cancel: Cancel | None = None, **fields: object
) -> tuple[InstanceResult, str, str]:
    out: list[bytes] = []
    err: list[bytes] = []
    spec = InstanceSpec(stdout=out.append, stderr=err.append, **fields)  # type: ignore[arg-type]
    result = run_instance(module, spec, cancel)
    return result, b"".join(out).decode(), b"".join(err).decode()


# -- loading ---------------------------------------------------------------------------------


def test_components_are_detected_compiled_and_cached(
    engine: WasmEngine, components: dict[str, Path]
) -> None:
    wasm = components["hello_component"].read_bytes()
    assert wasm[4:8] != b"\x01\x00\x00\x00"  # really a component, not a core module
    module = LoadedModule.from_bytes(engine, wasm)
    assert isinstance(module, LoadedComponent) and module.is_component
    assert module.run_export.startswith("wasi:cli/run@0.2")
    assert any(str(i).startswith("wasi:cli/") for i in module.imports)
    again = LoadedModule.from_serialized(engine, module.serialize())
    assert isinstance(again, LoadedComponent)
    result, out, _ = run(again, args=["cached"])
    assert result.succeeded and "arg[1]=cached" in out


def test_serialized_component_file_loads(
    engine: WasmEngine, components: dict[str, Path], tmp_path: Path
) -> None:
    artifact = tmp_path / "hello.cwasm"
    artifact.write_bytes(LoadedModule.from_file(engine, components["hello_component"]).serialize())
    module = LoadedModule.from_serialized_file(engine, artifact)
    assert isinstance(module, LoadedComponent)
    assert run(module)[0].succeeded


def test_component_without_cli_run_is_refused(engine: WasmEngine) -> None:
    # The smallest valid component: no imports, no exports.
    empty = b"\0asm\x0d\x00\x01\x00"
    with pytest.raises(ModuleError, match=r"does not export `wasi:cli/run"):
        LoadedModule.from_bytes(engine, empty)


def test_wrong_engine_artifact_is_refused(components: dict[str, Path]) -> None:
    from wasmlet_agent.runtime import EngineConfig

    with WasmEngine(EngineConfig(consume_fuel=False), start=False) as other:
        artifact = LoadedModule.from_file(other, components["hello_component"]).serialize()
    with WasmEngine() as engine, pytest.raises(ModuleError, match="does not fit this engine"):
        LoadedModule.from_serialized(engine, artifact)


# -- args, env, exit codes, traps ------------------------------------------------------------


def test_component_gets_args_and_env(comp: Comp) -> None:
    result, out, _ = run(
        comp("hello_component"),
        args=["one", "two words"],
        env={"GREETING": "hi", "GREET_VARS": "A,MISSING", "A": "x=y"},
        program_name="hello.wasm",
    )
    assert result.outcome is Outcome.EXITED and result.succeeded
    assert out.splitlines() == [
        "hi from wasm",
        "arg[0]=hello.wasm",
        "arg[1]=one",
        "arg[2]=two words",
        "env[A]=x=y",
        "env[MISSING]=<unset>",
    ]
    assert result.instantiate_seconds > 0 and result.run_seconds > 0


def test_go_component_runs(comp: Comp) -> None:
    result, out, _ = run(comp("gohello_component"), args=["x"])
    assert result.succeeded, result
    assert out.startswith("hello from go") and '"x"' in out


@pytest.mark.parametrize(("code", "reported"), [(0, 0), (1, 1), (42, 1)])
def test_exit_codes(comp: Comp, code: int, reported: int) -> None:
    # WASI 0.2's stable wasi:cli/exit carries only ok/err: the adapter maps any non-zero
    # preview1 exit code to err, which the host reports as 1.
    result, _, err = run(comp("exit_component"), args=[str(code)])
    assert result.outcome is Outcome.EXITED and result.exit_code == reported
    assert err == f"exiting with {code}\n"


def test_trap_is_reported(comp: Comp) -> None:
    result, out, _ = run(comp("memhog_component"), args=["1024", "abort"], memory_limit_bytes=MiB)
    assert result.outcome in (Outcome.TRAPPED, Outcome.OUT_OF_MEMORY)
    assert "unreachable" in result.message and result.exit_code is None
    assert out.startswith("memhog: chunk=1024 KiB")


# -- preopens ---------------------------------------------------------------------------------


def test_preopens_read_only_and_writable(comp: Comp, tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    (src / "input.txt").write_text("first line\nsecond\n")
    result, out, _ = run(
        comp("files_component"), preopens=[Preopen(src, "/in"), Preopen(dst, "/out", True)]
    )
    assert result.succeeded, result
    lines = out.splitlines()
    assert lines[0] == "OK read /in/input.txt: first line"
    assert lines[1] == "OK write /out/output.txt"
    assert lines[2].startswith("ERR write /in/denied.txt")
    assert all(line.startswith("ERR") for line in lines[3:])
    assert (dst / "output.txt").read_text() == "written by wasm"
    assert not (src / "denied.txt").exists()


# -- limits ---------------------------------------------------------------------------------


def test_timeout_stops_a_looping_component(comp: Comp) -> None:
    t0 = time.monotonic()
    result, out, _ = run(comp("loop_component"), timeout_seconds=0.3)
    assert result.outcome is Outcome.TIMED_OUT and "0.3" in result.message
    assert out == "looping\n" and time.monotonic() - t0 < 1.3


def test_fuel_stops_a_looping_component(comp: Comp) -> None:
    result, _, _ = run(comp("loop_component"), fuel=5_000_000)
    assert result.outcome is Outcome.OUT_OF_FUEL


def test_cancel_stops_a_looping_component(comp: Comp) -> None:
    cancel = Cancel()
    timer = threading.Timer(0.2, cancel.cancel, args=("stop now",))
    timer.start()
    try:
        result, _, _ = run(comp("loop_component"), cancel)
    finally:
        timer.cancel()
    assert result.outcome is Outcome.CANCELLED and result.message == "stop now"


def test_memory_limit_below_initial_memory_refuses_to_start(comp: Comp) -> None:
    result, out, _ = run(comp("hello_component"), memory_limit_bytes=64 * 1024)
    assert result.outcome is Outcome.OUT_OF_MEMORY and "memory" in result.message
    assert out == ""


def test_memory_limit_stops_growth(comp: Comp) -> None:
    # Unlimited, memhog would grow to 4 GiB; the 4 MiB limit stops it within milliseconds
    # (the adapter traps when its own allocation fails after the guest's malloc did).
    t0 = time.monotonic()
    result, out, _ = run(
        comp("memhog_component"), args=["256"], memory_limit_bytes=4 * MiB, timeout_seconds=20
    )
    assert result.outcome is not Outcome.TIMED_OUT and not result.succeeded
    assert time.monotonic() - t0 < 5
    assert out.startswith("memhog: chunk=256 KiB")


# -- HTTP (CGI over stdio) ------------------------------------------------------------------


def test_cgi_request_served_by_a_component(comp: Comp) -> None:
    from wasmlet_agent.runtime.cgi import CgiRequest, invoke_cgi

    response = invoke_cgi(
        comp("cgi_component"), CgiRequest(method="POST", path="/x", query="a=1", body=b"body!")
    )
    assert response.status == 200
    assert response.body == b"method=POST\npath=/x\nquery=a=1\nbody_length=5\nbody=body!\n"


# -- the network flag ---------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP listener on 127.0.0.1 (free port) recording what each connection sends."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    received.append(conn.recv(100))
                except OSError:
                    received.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1], received
    stop.set()
    thread.join()
    srv.close()


def test_network_off_denies_connect_and_name_lookup(
    comp: Comp, listener: tuple[int, list[bytes]]
) -> None:
    port, received = listener
    result, out, _ = run(
        comp("connect_component"), args=[f"connect:127.0.0.1:{port}", "resolve:localhost"]
    )
    assert result.outcome is Outcome.EXITED and result.exit_code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"ERR connect 127.0.0.1:{port}") and "access-denied" in lines[0]
    assert lines[1] == "ERR resolve localhost: permanent-resolver-failure"
    time.sleep(0.3)
    assert received == []


def test_network_on_resolves_names(comp: Comp) -> None:
    result, out, _ = run(comp("connect_component"), args=["resolve:localhost"], network=True)
    assert result.succeeded, out
    assert out in ("OK resolve localhost: 127.0.0.1\n", "OK resolve localhost: 0:0:0:0:0:0:0:1\n")


@pytest.mark.xfail(
    not network_capabilities()["tcp"],
    strict=True,
    reason="wasmtime >= 48 denies TCP unless allowed and the C API of this wasmtime-py has "
    "no wasi_config_allow_tcp, so no embedder of these bindings can enable it",
)
def test_network_on_connects_to_a_loopback_listener(
    comp: Comp, listener: tuple[int, list[bytes]]
) -> None:
    port, received = listener
    result, out, _ = run(
        comp("connect_component"), args=[f"connect:127.0.0.1:{port}"], network=True
    )
    assert out == f"OK connect 127.0.0.1:{port}\n" and result.succeeded
    deadline = time.monotonic() + 2
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received == [b"hello from wasm\n"]


def test_network_on_without_tcp_fails_at_socket_creation(
    comp: Comp, listener: tuple[int, list[bytes]]
) -> None:
    """Pins today's limit, so the day the bindings allow TCP this test says so."""
    if network_capabilities()["tcp"]:
        pytest.skip("this wasmtime library can allow TCP")
    port, _ = listener
    _, out, _ = run(comp("connect_component"), args=[f"connect:127.0.0.1:{port}"], network=True)
    assert out == f"ERR connect 127.0.0.1:{port}: create-tcp-socket: access-denied\n"


def test_core_modules_ignore_the_network_flag(load: Callable[[str], LoadedModule]) -> None:
    result, out, _ = run(load("hello"), network=True)
    assert result.succeeded and out.startswith("hello from wasm")


def test_component_usage_counts_cpu_but_cannot_see_memory(comp: Comp) -> None:
    # The C API gives no access to a component's core memories (and no limiter callback),
    # so its live memory stays 0; its thread's CPU time is counted like a module's.
    usage, loop = Usage(), comp("loop_component")
    before = time.thread_time()
    result = run_instance(loop, InstanceSpec(timeout_seconds=0.4), None, usage)
    spent = time.thread_time() - before
    assert result.outcome is Outcome.TIMED_OUT
    assert spent > 0.02 and spent - 0.005 < usage.cpu_seconds <= spent
    assert usage.memory_bytes == 0
