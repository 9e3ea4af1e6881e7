"""Instances under their limits: each test runs a guest that tries to break one of them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import wasmtime

from wasmlet_agent.runtime import (
    Cancel,
    EngineConfig,
    InstanceResult,
    InstanceSpec,
    LoadedModule,
    Outcome,
    Preopen,
    WasmEngine,
    run_instance,
)
from wasmlet_agent.runtime.instances import STORE_LIMITS
from wasmlet_agent.runtime.logs import LogBuffer

Load = Callable[[str], LoadedModule]
MiB = 1024 * 1024
# Generous slack for a loaded CI machine; the point is "stopped", not a benchmark.
STOP_MARGIN_SECONDS = 1.0


def run(module: LoadedModule, **fields: object) -> tuple[InstanceResult, str, str]:
    out: list[bytes] = []
    err: list[bytes] = []
    spec = InstanceSpec(stdout=out.append, stderr=err.append, **fields)  # type: ignore[arg-type]
    result = run_instance(module, spec)
    return result, b"".join(out).decode(), b"".join(err).decode()


# -- arguments, environment, exit codes, traps --------------------------------------------


def test_hello_gets_its_args_and_env(load: Load) -> None:
    result, out, _ = run(
        load("hello"),
        args=["one", "two words"],
        env={"GREETING": "hi", "GREET_VARS": "A,MISSING", "A": "x=y"},
        program_name="hello.wasm",
    )
    assert result.outcome is Outcome.EXITED and result.exit_code == 0 and result.succeeded
    assert out.splitlines() == [
        "hi from wasm",
        "arg[0]=hello.wasm",
        "arg[1]=one",
        "arg[2]=two words",
        "env[A]=x=y",
        "env[MISSING]=<unset>",
    ]
    assert result.peak_memory_bytes > 0
    assert result.instantiate_seconds > 0 and result.run_seconds > 0


def test_host_environment_is_invisible(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMLET_HOST_SECRET", "do-not-leak")
    result, out, _ = run(load("envdump"), env={"ONLY": "this", "AND": "that"})
    assert result.succeeded
    assert out.splitlines() == ["ONLY=this", "AND=that", "# 2 variables"]
    assert "do-not-leak" not in out and "PATH=" not in out


def test_empty_env_is_empty(load: Load) -> None:
    result, out, _ = run(load("envdump"))
    assert result.succeeded and out == "# 0 variables\n"


@pytest.mark.parametrize("code", [0, 1, 3, 42, 125])
def test_exit_codes_are_reported(load: Load, code: int) -> None:
    result, _, err = run(load("exit"), args=[str(code)])
    assert result.outcome is Outcome.EXITED
    assert result.exit_code == code
    assert result.succeeded is (code == 0)
    assert err == f"exiting with {code}\n"


def test_go_guest_exits_zero(load: Load) -> None:
    result, out, _ = run(load("gohello"), args=["a b"])
    assert result.succeeded
    assert out.startswith("hello from go go1.")
    assert 'args=["main.wasm" "a b"]' in out


def test_trap_is_reported_with_its_message(load: Load) -> None:
    result, _, _ = run(load("trap"))
    assert result.outcome is Outcome.TRAPPED
    assert result.exit_code is None
    assert result.message == "wasm trap: wasm `unreachable` instruction executed"
    assert "wasm backtrace" in result.detail


# -- wall-clock timeouts, fuel and cancellation ------------------------------------------


def test_infinite_loop_is_stopped_at_its_timeout(load: Load) -> None:
    result, out, _ = run(load("loop"), timeout_seconds=0.3)
    assert out == "looping\n"
    assert result.outcome is Outcome.TIMED_OUT
    assert "timed out after 0.3 s" in result.message
    assert 0.3 <= result.run_seconds < 0.3 + STOP_MARGIN_SECONDS


def test_timeout_also_stops_a_guest_that_sleeps(load: Load) -> None:
    result, out, _ = run(load("long"), timeout_seconds=0.35)
    assert result.outcome is Outcome.TIMED_OUT
    assert out.startswith("tick 0\ntick 1\n")
    assert result.run_seconds < 0.35 + STOP_MARGIN_SECONDS


def test_guest_that_finishes_in_time_is_not_timed_out(load: Load) -> None:
    result, _, _ = run(load("hello"), timeout_seconds=5)
    assert result.succeeded


def test_fuel_exhaustion_is_reported(load: Load) -> None:
    result, _, _ = run(load("loop"), fuel=5_000_000)
    assert result.outcome is Outcome.OUT_OF_FUEL
    assert "fuel" in result.message


def test_enough_fuel_lets_a_guest_finish(load: Load) -> None:
    result, _, _ = run(load("hello"), fuel=50_000_000)
    assert result.succeeded


def test_fuel_needs_an_engine_that_meters_it(guests: dict[str, Path]) -> None:
    eng = WasmEngine(EngineConfig(consume_fuel=False), start=False)
    module = LoadedModule.from_file(eng, guests["hello"])
    assert run_instance(module, InstanceSpec()).succeeded
    result = run_instance(module, InstanceSpec(fuel=1000))
    assert result.outcome is Outcome.FAILED_TO_START
    assert "consume_fuel" in result.message


def test_cancel_stops_a_long_running_guest(load: Load) -> None:
    logs = LogBuffer()
    cancel = Cancel()
    stopper = threading.Timer(0.35, cancel.cancel)
    stopper.start()
    result = run_instance(load("long"), InstanceSpec(stdout=logs.sink()), cancel)
    assert result.outcome is Outcome.CANCELLED
    assert result.message == "cancelled"
    assert result.run_seconds < 0.35 + STOP_MARGIN_SECONDS
    assert [line.text for line in logs.tail()][:2] == ["tick 0", "tick 1"]


def test_cancel_stops_a_busy_loop(load: Load) -> None:
    cancel = Cancel()
    threading.Timer(0.2, cancel.cancel, kwargs={"reason": "scaled down"}).start()
    result = run_instance(load("loop"), InstanceSpec(timeout_seconds=60), cancel)
    assert result.outcome is Outcome.CANCELLED
    assert result.message == "scaled down"
    assert result.run_seconds < 0.2 + STOP_MARGIN_SECONDS


def test_cancel_before_start_does_not_run(load: Load) -> None:
    cancel = Cancel()
    cancel.cancel()
    result, _, _ = run(load("hello"))
    assert result.succeeded  # no token, no effect
    result = run_instance(load("hello"), InstanceSpec(), cancel)
    assert result.outcome is Outcome.CANCELLED and result.run_seconds == 0


def test_unused_cancel_token_changes_nothing(load: Load) -> None:
    result = run_instance(load("exit"), InstanceSpec(args=["4"]), Cancel())
    assert result.outcome is Outcome.EXITED and result.exit_code == 4


# -- memory --------------------------------------------------------------------------------


def test_memhog_is_stopped_by_the_limit_when_malloc_fails(load: Load) -> None:
    result, out, _ = run(load("memhog"), memory_limit_bytes=16 * MiB)
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert result.exit_code == 12  # the guest saw malloc fail and exited its own way
    assert "malloc failed after" in out
    assert result.peak_memory_bytes <= 16 * MiB
    assert "16777216" in result.message


def test_memhog_that_aborts_is_out_of_memory_not_a_plain_trap(load: Load) -> None:
    result, out, _ = run(load("memhog"), args=["1024", "abort"], memory_limit_bytes=16 * MiB)
    assert "malloc failed after" in out
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert "unreachable" in result.message and "memory at" in result.message
    assert result.peak_memory_bytes <= 16 * MiB


def test_memory_grow_is_refused_at_the_limit_not_trapped(load: Load) -> None:
    """The store limit makes memory.grow return -1; the guest's `unreachable` is the trap."""
    result, _, _ = run(load("memgrow"), memory_limit_bytes=4 * MiB)
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert result.peak_memory_bytes == 4 * MiB
    assert "unreachable" in result.message


def test_go_runtime_out_of_memory(load: Load) -> None:
    result, _, err = run(load("gohello"), memory_limit_bytes=2_600_000)
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert result.exit_code == 2
    assert "out of memory" in err or "cannot allocate memory" in err


def test_limit_below_initial_memory_fails_up_front(load: Load) -> None:
    result, out, _ = run(load("hello"), memory_limit_bytes=64 * 1024)
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert "initial memory" in result.message and out == ""


def test_failures_far_from_the_limit_are_not_called_out_of_memory(load: Load) -> None:
    result, _, _ = run(load("trap"), memory_limit_bytes=16 * MiB)
    assert result.outcome is Outcome.TRAPPED
    result, _, _ = run(load("exit"), args=["3"], memory_limit_bytes=16 * MiB)
    assert result.outcome is Outcome.EXITED and result.exit_code == 3


# -- files ---------------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """in/ (read-only for the guest), out/ (writable), and a secret beside them."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "input.txt").write_text("hello input\n")
    (tmp_path / "secret.txt").write_text("top secret\n")
    (tmp_path / "in" / "hostetc").symlink_to("/etc")
    (tmp_path / "in" / "secretlink").symlink_to(tmp_path / "secret.txt")
    return tmp_path


def mounts(root: Path) -> list[Preopen]:
    return [Preopen(root / "in", "/in"), Preopen(root / "out", "/out", writable=True)]


def test_files_scenario(load: Load, sandbox: Path) -> None:
    result, out, _ = run(load("files"), preopens=mounts(sandbox))
    assert result.succeeded
    lines = out.splitlines()
    assert lines[0] == "OK read /in/input.txt: hello input"
    assert lines[1] == "OK write /out/output.txt"
    assert lines[2].startswith("ERR write /in/denied.txt")
    for line in lines[3:]:
        assert line.startswith("ERR read "), line
    assert (sandbox / "out" / "output.txt").read_text() == "written by wasm"
    assert not (sandbox / "in" / "denied.txt").exists()


@pytest.mark.parametrize(
    "op",
    [
        "read:/in/../secret.txt",
        "read:/in/../../../../etc/passwd",
        "read:/in/sub/../../secret.txt",
        "read:/out/../in/input.txt",  # even into another preopen
        "read:/in/hostetc/passwd",  # symlink to an absolute host path
        "read:/in/secretlink",  # symlink out of the preopen
        "read:/etc/passwd",
        "read:/proc/self/environ",
        "read:../secret.txt",
        "list:/",
        "list:/in/..",
        "write:/out/../escape.txt=x",
        "mkdir:/out/../escaped",
    ],
)
def test_path_traversal_out_of_a_preopen_is_impossible(load: Load, sandbox: Path, op: str) -> None:
    result, out, _ = run(load("files"), args=[op], preopens=mounts(sandbox))
    assert result.succeeded
    assert out.startswith("ERR "), out
    assert "top secret" not in out and "root:" not in out
    assert not (sandbox / "escape.txt").exists() and not (sandbox / "escaped").exists()


def test_inside_a_preopen_relative_paths_work(load: Load, sandbox: Path) -> None:
    result, out, _ = run(
        load("files"),
        args=["read:/in/sub/../input.txt", "list:/in", "mkdir:/out/d", "write:/out/d/../f=1"],
        preopens=mounts(sandbox),
    )
    assert result.succeeded
    read, listing, mkdir, write = out.splitlines()
    assert read == "OK read /in/sub/../input.txt: hello input"
    assert sorted(listing.split(": ")[1].split()) == ["hostetc", "input.txt", "secretlink", "sub"]
    assert (mkdir, write) == ("OK mkdir /out/d", "OK write /out/d/../f")
    assert (sandbox / "out" / "f").read_text() == "1"


@pytest.mark.parametrize(
    "op",
    ["write:/in/input.txt=changed", "write:/in/new.txt=x", "mkdir:/in/d", "unlink:/in/input.txt"],
)
def test_read_only_preopen_refuses_writes(load: Load, sandbox: Path, op: str) -> None:
    result, out, _ = run(load("files"), args=[op], preopens=mounts(sandbox))
    assert result.succeeded
    assert out.startswith("ERR "), out
    assert sorted(p.name for p in (sandbox / "in").iterdir()) == [
        "hostetc",
        "input.txt",
        "secretlink",
        "sub",
    ]
    assert (sandbox / "in" / "input.txt").read_text() == "hello input\n"


def test_without_preopens_there_is_no_filesystem(load: Load) -> None:
    result, out, _ = run(load("files"), args=["read:/etc/passwd", "list:/", "write:/tmp/x=1"])
    assert result.succeeded
    assert [line.split(":")[0] for line in out.splitlines()] == [
        "ERR read /etc/passwd",
        "ERR list /",
        "ERR write /tmp/x",
    ]


def test_missing_preopen_directory_fails_to_start(load: Load, tmp_path: Path) -> None:
    result, _, _ = run(load("files"), preopens=[Preopen(tmp_path / "nope", "/data")])
    assert result.outcome is Outcome.FAILED_TO_START
    assert "/data" in result.message and "does not exist" in result.message


# -- stdio ---------------------------------------------------------------------------------


def test_stdin_from_a_file_and_stdout_to_a_file(load: Load, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(b"posted bytes")
    spec = InstanceSpec(
        env={"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "12"},
        stdin_path=str(tmp_path / "in.txt"),
        stdout_path=str(tmp_path / "out.txt"),
    )
    assert run_instance(load("cgi"), spec).succeeded
    assert b"body=posted bytes\n" in (tmp_path / "out.txt").read_bytes()


def test_stdin_from_a_memfd(load: Load) -> None:
    fd = os.memfd_create("stdin")
    try:
        os.write(fd, b"from memory")
        result, out, _ = run(
            load("cgi"),
            env={"REQUEST_METHOD": "PUT", "CONTENT_LENGTH": "11"},
            stdin_path=f"/proc/self/fd/{fd}",
        )
    finally:
        os.close(fd)
    assert result.succeeded and "body=from memory\n" in out


def test_missing_stdin_file_fails_to_start(load: Load, tmp_path: Path) -> None:
    result, _, _ = run(load("hello"), stdin_path=str(tmp_path / "absent"))
    assert result.outcome is Outcome.FAILED_TO_START and "stdin" in result.message


def test_sink_and_path_for_one_stream_is_an_error(load: Load, tmp_path: Path) -> None:
    spec = InstanceSpec(stdout=lambda b: None, stdout_path=str(tmp_path / "o"))
    result = run_instance(load("hello"), spec)
    assert result.outcome is Outcome.FAILED_TO_START and "stdout" in result.message


def test_without_sinks_output_is_discarded(load: Load, capfd: pytest.CaptureFixture[str]) -> None:
    assert run_instance(load("hello"), InstanceSpec()).succeeded
    assert run_instance(load("exit"), InstanceSpec(args=["1"])).exit_code == 1
    captured = capfd.readouterr()
    assert "hello from wasm" not in captured.out and "exiting" not in captured.err


# -- concurrency ---------------------------------------------------------------------------


def test_many_instances_from_one_instance_pre_in_threads(load: Load) -> None:
    module = load("hello")

    def one(i: int) -> tuple[InstanceResult, str]:
        result, out, _ = run(module, args=[f"n{i}"], env={"GREET_VARS": "ID", "ID": str(i)})
        return result, out

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(one, range(400)))
    for i, (result, out) in enumerate(outcomes):
        assert result.succeeded
        assert f"arg[1]=n{i}\n" in out and f"env[ID]={i}\n" in out
        assert out.count("hello from wasm") == 1


def test_a_stuck_instance_does_not_block_others(load: Load) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        stuck = pool.submit(run, load("loop"), timeout_seconds=1.5)
        started = time.monotonic()
        quick = [pool.submit(run, load("hello")) for _ in range(50)]
        assert all(f.result()[0].succeeded for f in quick)
        assert time.monotonic() - started < 1.5  # all done while the loop still ran
        assert stuck.result()[0].outcome is Outcome.TIMED_OUT


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"args": ["a\0b"]}, "argument 1"),
        ({"env": {"K": "v\0w"}}, "env K"),
        ({"env": {"A=B": "v"}}, "env name"),
        ({"env": {"": "v"}}, "env name"),
    ],
)
def test_strings_that_c_cannot_carry_fail_to_start(
    load: Load, fields: dict[str, object], reason: str
) -> None:
    result, out, _ = run(load("hello"), **fields)
    assert result.outcome is Outcome.FAILED_TO_START
    assert reason in result.message and out == ""


def test_a_huge_table_is_refused_whatever_the_memory_limit(engine: WasmEngine) -> None:
    """limits.memory caps linear memory; tables are capped too (STORE_LIMITS)."""
    big = STORE_LIMITS["table_elements"] + 1
    wat = f'(module (table {big} funcref) (memory 1) (func (export "_start")))'
    module = LoadedModule.from_bytes(engine, wasmtime.wat2wasm(wat), name="bigtable")
    result, _, _ = run(module, memory_limit_bytes=64 * 1024)
    assert result.outcome is Outcome.FAILED_TO_START, result
    assert "exceeds table limits" in result.message
    small = f'(module (table {big - 1} funcref) (memory 1) (func (export "_start")))'
    ok = LoadedModule.from_bytes(engine, wasmtime.wat2wasm(small), name="table")
    assert run(ok, memory_limit_bytes=64 * 1024)[0].succeeded
