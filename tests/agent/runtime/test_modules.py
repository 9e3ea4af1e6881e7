"""Loading modules: what is refused with which message, and precompiled artifacts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from wasmlet_agent.runtime import (
    EngineConfig,
    InstanceSpec,
    LoadedModule,
    ModuleError,
    Outcome,
    WasmEngine,
    run_instance,
)
from wasmlet_agent.runtime.modules import compile_artifact


def run_hello(module: LoadedModule) -> bytes:
    out: list[bytes] = []
    result = run_instance(module, InstanceSpec(args=["x"], stdout=out.append))
    assert result.outcome is Outcome.EXITED and result.exit_code == 0
    return b"".join(out)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"(module)",  # WAT text: wasmtime would accept it, the runtime must not
        b"\x89PNG\r\n\x1a\n....",
        b"<html><body>404</body></html>",
        b"PK\x03\x04zipfile",
    ],
)
def test_non_wasm_bytes_are_refused_before_compiling(engine: WasmEngine, data: bytes) -> None:
    with pytest.raises(ModuleError, match="not a WebAssembly binary"):
        LoadedModule.from_bytes(engine, data, name="app.wasm")


def test_component_binary_is_named_as_such(engine: WasmEngine) -> None:
    component_header = b"\0asm\x0d\x00\x01\x00"
    with pytest.raises(ModuleError, match="component"):
        LoadedModule.from_bytes(engine, component_header)


def test_corrupt_module_gives_the_validation_error(
    engine: WasmEngine, guests: dict[str, Path]
) -> None:
    data = guests["hello"].read_bytes()
    with pytest.raises(ModuleError, match="not a valid WebAssembly module") as err:
        LoadedModule.from_bytes(engine, data[: len(data) // 2], name="half.wasm")
    assert "half.wasm" in str(err.value)


def test_missing_wasi_import_is_named(engine: WasmEngine, guests: dict[str, Path]) -> None:
    with pytest.raises(ModuleError) as err:
        LoadedModule.from_file(engine, guests["missing_import"])
    assert err.value.missing_imports == (("wasi_snapshot_preview1", "does_not_exist"),)
    assert "wasi_snapshot_preview1::does_not_exist" in str(err.value)
    assert "WASI preview 1" in str(err.value)


def test_all_unknown_imports_are_listed(engine: WasmEngine) -> None:
    wasm = wasmtime.wat2wasm(
        """(module
          (import "env" "host_log" (func (param i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
          (import "env" "counter" (global i32))
          (memory (export "memory") 1)
          (func (export "_start")))"""
    )
    with pytest.raises(ModuleError) as err:
        LoadedModule.from_bytes(engine, wasm)
    assert err.value.missing_imports == (("env", "host_log"), ("env", "counter"))


def test_wrongly_typed_wasi_import_is_refused(engine: WasmEngine) -> None:
    wasm = wasmtime.wat2wasm(
        """(module
          (import "wasi_snapshot_preview1" "proc_exit" (func (param i64)))
          (func (export "_start")))"""
    )
    with pytest.raises(ModuleError, match="proc_exit"):
        LoadedModule.from_bytes(engine, wasm)


def test_module_without_start_is_not_a_command(engine: WasmEngine) -> None:
    wasm = wasmtime.wat2wasm('(module (func (export "_initialize")))')
    with pytest.raises(ModuleError, match=r"_start.*reactor"):
        LoadedModule.from_bytes(engine, wasm)


@pytest.mark.parametrize(
    "start",
    ['(func (export "_start") (param i32))', '(func (export "_start") (result i32) i32.const 0)'],
)
def test_a_start_with_parameters_or_results_is_not_a_command(
    engine: WasmEngine, start: str
) -> None:
    wasm = wasmtime.wat2wasm(f"(module {start})")
    with pytest.raises(ModuleError, match="takes and returns nothing"):
        LoadedModule.from_bytes(engine, wasm)


def test_module_without_wasi_runs(load: Callable[[str], LoadedModule]) -> None:
    module = load("nowasi")
    assert module.imports == []
    result = run_instance(module, InstanceSpec())
    assert result.outcome is Outcome.EXITED and result.exit_code == 0
    assert result.peak_memory_bytes == 65536


def test_imports_are_listed(load: Callable[[str], LoadedModule]) -> None:
    names = {str(i) for i in load("hello").imports}
    assert "wasi_snapshot_preview1::fd_write" in names
    assert "wasi_snapshot_preview1::proc_exit" in names


def test_serialized_artifact_round_trips(
    engine: WasmEngine, load: Callable[[str], LoadedModule], tmp_path: Path
) -> None:
    compiled = load("hello")
    artifact = compiled.serialize()
    assert not artifact.startswith(b"\0asm")  # native code, not the module again

    from_bytes = LoadedModule.from_serialized(engine, artifact, name="hello")
    path = tmp_path / "hello.cwasm"
    path.write_bytes(artifact)
    from_file = LoadedModule.from_serialized_file(engine, path)
    expected = run_hello(compiled)
    assert expected.startswith(b"hello from wasm")
    assert run_hello(from_bytes) == expected
    assert run_hello(from_file) == expected


def test_compile_artifact_gives_a_loadable_artifact(
    engine: WasmEngine, guests: dict[str, Path]
) -> None:
    artifact = compile_artifact(engine, guests["gohello"].read_bytes())
    module = LoadedModule.from_serialized(engine, artifact)
    assert run_hello(module).startswith(b"hello from go")


def test_artifact_from_another_engine_config_is_refused(
    engine: WasmEngine, load: Callable[[str], LoadedModule]
) -> None:
    other = WasmEngine(EngineConfig(consume_fuel=False), start=False)
    artifact = load("hello").serialize()
    with pytest.raises(ModuleError, match="recompile"):
        LoadedModule.from_serialized(other, artifact)


def test_garbage_artifact_is_refused(engine: WasmEngine, guests: dict[str, Path]) -> None:
    with pytest.raises(ModuleError, match="does not fit this engine"):
        LoadedModule.from_serialized(engine, guests["hello"].read_bytes())
    with pytest.raises(ModuleError, match="does not fit this engine"):
        LoadedModule.from_serialized(engine, b"\x7fELF garbage")
