"""Running one WASI instance under its limits and reporting, as plain data, how it ended.

Long (~540 lines) on purpose: the limits (memory, fuel, epoch deadline through a C callback),
WASI setup and the classification of how a run ended for modules and components are one
sequence around one Store; the pure part of it is `classify`.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

import wasmtime
import wasmtime.component
from wasmtime import _bindings, _ffi, _wasi

from wasmlet_agent.runtime import gil
from wasmlet_agent.runtime.modules import LoadedComponent, LoadedModule
from wasmlet_agent.runtime.usage import Usage

# An unlimited instance still needs an epoch deadline (the default is "now"); ~89 years of
# 10 ms ticks, far from overflowing the u64 epoch counter.
_NO_DEADLINE_TICKS = 1 << 48
_NO_FUEL_LIMIT = (1 << 63) - 1
# A guest that ends abnormally within this fraction of its memory limit ran out of memory:
# memory.grow past the limit returns -1 to the guest, which then fails its own way.
_OOM_HEADROOM_FRACTION = 8
_OOM_MIN_HEADROOM = 1 << 16
# A run with a Usage is sampled at least every this many ticks of guest execution (50 ms at
# the default tick): live enough for a scrape interval, rare enough to cost nothing.
SAMPLE_TICKS = 5

Sink = Callable[[bytes], None]

gil.install()  # an instance's short wasmtime calls keep the GIL: see gil.py


class Outcome(StrEnum):
    EXITED = "Exited"  # _start returned or proc_exit was called; see exit_code
    TRAPPED = "Trapped"
    TIMED_OUT = "TimedOut"
    OUT_OF_MEMORY = "OutOfMemory"
    OUT_OF_FUEL = "OutOfFuel"
    FAILED_TO_START = "FailedToStart"
    CANCELLED = "Cancelled"  # stopped through its Cancel token


class PreopenLike(Protocol):
    @property
    def host_path(self) -> str | os.PathLike[str]: ...
    @property
    def guest_path(self) -> str: ...
    @property
    def writable(self) -> bool: ...


class Preopen(NamedTuple):
    """A host directory the guest sees at guest_path; read-only unless writable."""

    host_path: str | os.PathLike[str]
    guest_path: str
    writable: bool = False


@dataclass(frozen=True)
class InstanceSpec:
    """What one instance gets. Nothing of the host is visible unless it is listed here."""

    args: Sequence[str] = ()  # argv[1:]
    env: Mapping[str, str] = field(default_factory=dict)
    preopens: Sequence[PreopenLike] = ()
    memory_limit_bytes: int | None = None  # per linear memory
    timeout_seconds: float | None = None  # wall clock from instantiation; None = unlimited
    fuel: int | None = None  # instruction budget; needs EngineConfig.consume_fuel
    stdin_path: str | None = None  # e.g. /proc/self/fd/N of a memfd; None = empty stdin
    stdout: Sink | None = None  # called on a wasmtime I/O thread per write; None discards
    stderr: Sink | None = None
    stdout_path: str | None = None  # instead of a sink: a file, created or truncated
    stderr_path: str | None = None
    program_name: str = "main.wasm"  # argv[0]
    # WASI 0.2 components only (preview 1 has no way to open a socket, so core modules ignore
    # it): True lets the guest resolve names and connect anywhere the node can; False, the
    # default, denies every wasi:sockets address and name lookup. See `network_capabilities`.
    network: bool = False


@dataclass(frozen=True)
class InstanceResult:
    outcome: Outcome
    exit_code: int | None = None  # set when the guest exited (also for OUT_OF_MEMORY exits)
    message: str = ""  # the trap or error, first line the cause
    detail: str = ""  # wasmtime's full text including the wasm backtrace
    instantiate_seconds: float = 0.0
    run_seconds: float = 0.0
    peak_memory_bytes: int = 0  # linear memory never shrinks: its final size is the peak

    @property
    def succeeded(self) -> bool:
        return self.outcome is Outcome.EXITED and self.exit_code == 0


class Cancel:
    """Stops a running instance from another thread.

    The guest stops at its next epoch check after cancel(): within `check_ticks` ticks while
    it computes, or when a blocking host call (a sleep, a read) returns. Subclasses may
    override `should_stop`, which is polled on the guest's thread, to stop on a condition.
    """

    check_ticks = 5

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def should_stop(self) -> bool:
        return self._event.is_set()


class _Watch:
    """Per-run state the epoch callback reads; it runs on the guest's own thread."""

    __slots__ = ("cancel", "deadline", "memories", "reason", "tick", "usage")

    def __init__(
        self, deadline: float | None, cancel: Cancel | None, tick: float, usage: Usage | None
    ) -> None:
        self.deadline = deadline
        self.cancel = cancel
        self.tick = tick
        self.reason: Outcome | None = None
        self.usage = usage
        # The instance's exported memories once instantiated (components: none visible).
        self.memories: list[Any] = []

    def first_ticks(self) -> int:
        if self.deadline is None:
            return self._cancel_ticks()
        return self._ticks_until(self.deadline - time.monotonic())

    def _cancel_ticks(self) -> int:
        ticks = max(1, self.cancel.check_ticks) if self.cancel is not None else _NO_DEADLINE_TICKS
        return min(ticks, SAMPLE_TICKS) if self.usage is not None else ticks

    def _ticks_until(self, remaining: float) -> int:
        return min(max(1, math.ceil(remaining / self.tick)), self._cancel_ticks())

    def check(self) -> int:
        """0 = stop now (reason set), else how many more ticks to run."""
        if self.cancel is not None and self.cancel.should_stop():
            self.reason = Outcome.CANCELLED
            return 0
        if self.deadline is None:
            return self._cancel_ticks()
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.reason = Outcome.TIMED_OUT
            return 0
        return self._ticks_until(remaining)

    def sample(self, ctx: Any) -> None:
        """Read the live memory size and CPU time into the Usage; never raises.

        `ctx` is the store context wasmtime hands the callback: the guest is paused at an
        epoch check on this thread, so reading its memories' sizes is safe here.
        """
        usage = self.usage
        if usage is None:
            return
        try:
            memory = None
            if self.memories:
                memory = sum(_ffi.wasmtime_memory_data_size(ctx, m) for m in self.memories)
            usage.sample(memory, time.thread_time())
        except Exception:  # sampling must never stop a guest: give it up instead
            self.usage = None


# Watches by handle; the C callback gets the handle as its env pointer.
_WATCHES: dict[int, _Watch] = {}
_WATCH_IDS = itertools.count(1)
_CallbackType = _bindings._wasmtime_store_epoch_deadline_callback.argtypes[1]
_FinalizerType = _bindings._wasmtime_store_epoch_deadline_callback.argtypes[3]
_UPDATE_DEADLINE_CONTINUE = 0


def _on_epoch_deadline(ctx: Any, env: int | None, delta: Any, kind: Any) -> int:
    try:
        watch = _WATCHES[env or 0]
        ticks = watch.check()
    except Exception as err:  # never let an exception unwind into wasmtime
        ticks, message = 0, f"wasmlet: epoch callback failed: {err}"
    else:
        message = f"wasmlet: {watch.reason}"
        if ticks != 0:
            watch.sample(ctx)
    if ticks == 0:
        error = _ffi.wasmtime_error_new(message.encode())
        return ctypes.cast(error, ctypes.c_void_p).value or 0
    delta[0] = ticks
    kind[0] = _UPDATE_DEADLINE_CONTINUE
    return 0


def _on_store_dropped(env: int | None) -> None:
    _WATCHES.pop(env or 0, None)


_EPOCH_CALLBACK = _CallbackType(_on_epoch_deadline)
_EPOCH_FINALIZER = _FinalizerType(_on_store_dropped)


def _call_start(store: wasmtime.Store, start: wasmtime.Func) -> None:
    """`_start()`, raising as Func.__call__ does; its () -> () type was checked at load, so
    the type is not read again per run (four more wasmtime calls and their Python wrappers)."""
    trap = ctypes.POINTER(_ffi.wasm_trap_t)()
    error = _ffi.wasmtime_func_call(
        store._context(), ctypes.byref(start._func), None, 0, None, 0, ctypes.byref(trap)
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)  # an ExitTrap for proc_exit
    if trap:
        raise wasmtime.Trap._from_ptr(trap)


def _split_message(text: str) -> tuple[str, str]:
    """(cause, full text): wasmtime puts the cause after 'Caused by:' below the backtrace."""
    full = text.strip()
    _, sep, cause = full.rpartition("Caused by:")
    cause = (cause if sep else full).strip()
    return cause.splitlines()[0].strip() if cause else full, full


def _linear_memory_bytes(memories: Sequence[wasmtime.Memory], store: wasmtime.Store) -> int:
    return sum(m.data_len(store) for m in memories)


def _near_limit(peak: int, limit: int | None) -> bool:
    if limit is None:
        return False
    return peak + max(limit // _OOM_HEADROOM_FRACTION, _OOM_MIN_HEADROOM) >= limit


def classify(
    error: Exception | None,
    exit_code: int | None,
    stopped_by: Outcome | None,
    peak: int | None,
    limit: int | None,
) -> tuple[Outcome, str, str]:
    """How a run ended: (outcome, cause, full text). Pure; shared by modules and components.

    `stopped_by` is the epoch watch's verdict (timeout or cancel), `peak` the final linear
    memory (None for components, whose memories are not visible: only a trap that names a
    memory limit then counts as out of memory).
    """
    if error is None:
        if exit_code not in (0, None) and peak is not None and _near_limit(peak, limit):
            return (
                Outcome.OUT_OF_MEMORY,
                f"exited with {exit_code} after its memory reached {peak} of the "
                f"{limit} bytes allowed",
                "",
            )
        return Outcome.EXITED, "", ""
    cause, full = _split_message(str(error))
    code = error.trap_code if isinstance(error, wasmtime.Trap) else None
    if stopped_by is not None:
        return stopped_by, cause, full
    if code is wasmtime.TrapCode.OUT_OF_FUEL or "all fuel consumed" in full:
        return Outcome.OUT_OF_FUEL, cause, full
    if code is wasmtime.TrapCode.INTERRUPT:
        return Outcome.TIMED_OUT, cause, full
    if peak is not None and _near_limit(peak, limit):
        return (
            Outcome.OUT_OF_MEMORY,
            f"{cause} (memory at {peak} of the {limit} bytes allowed)",
            full,
        )
    if peak is None and _names_memory_limit(cause, limit):
        return Outcome.OUT_OF_MEMORY, cause, full
    return Outcome.TRAPPED, cause, full


def _names_memory_limit(cause: str, limit: int | None) -> bool:
    return limit is not None and "memory" in cause and "limit" in cause


def _instantiate_failed(err: Exception, limit: int | None, t0: float) -> InstanceResult:
    """A module or component that could not be instantiated (a start trap, a link error)."""
    cause, full = _split_message(str(err))
    outcome = Outcome.TRAPPED if isinstance(err, wasmtime.Trap) else Outcome.FAILED_TO_START
    if _names_memory_limit(cause, limit):
        outcome = Outcome.OUT_OF_MEMORY
    return InstanceResult(
        outcome, message=cause, detail=full, instantiate_seconds=time.perf_counter() - t0
    )


def _ended(
    error: Exception | None,
    exit_code: int | None,
    watch: _Watch | None,
    spec: InstanceSpec,
    cancel: Cancel | None,
    peak: int | None,
    times: tuple[float, float, float],
) -> InstanceResult:
    stopped_by = watch.reason if watch is not None else None
    outcome, cause, full = classify(error, exit_code, stopped_by, peak, spec.memory_limit_bytes)
    if stopped_by is Outcome.TIMED_OUT:
        cause = f"timed out after {spec.timeout_seconds} s"
    elif stopped_by is not None and cancel is not None:
        cause = cancel.reason
    t0, t1, t2 = times
    return InstanceResult(
        outcome,
        exit_code=exit_code,
        message=cause,
        detail=full,
        instantiate_seconds=t1 - t0,
        run_seconds=t2 - t1,
        peak_memory_bytes=peak or 0,
    )


def _check_strings(spec: InstanceSpec) -> None:
    # WASI passes these as C strings: a NUL would silently cut them short.
    for i, arg in enumerate([spec.program_name, *spec.args]):
        if "\0" in arg:
            raise _StartError(f"argument {i} contains a NUL byte")
    for name, value in spec.env.items():
        if not name or "=" in name or "\0" in name:
            raise _StartError(f"env name {name!r} must be non-empty without '=' or NUL")
        if "\0" in value:
            raise _StartError(f"env {name}: the value contains a NUL byte")


_CharPP = ctypes.POINTER(ctypes.POINTER(ctypes.c_char))


def _c_strings(strings: Iterable[str]) -> Any:
    """A C array of UTF-8 strings for wasi_config_set_argv/env, built in one ctypes call
    (the bindings' setters take ~2x as long; a CGI request sets ~15 variables)."""
    encoded = [s.encode() for s in strings]
    return ctypes.cast((ctypes.c_char_p * len(encoded))(*encoded), _CharPP)


def _configure_wasi(spec: InstanceSpec) -> wasmtime.WasiConfig:
    _check_strings(spec)
    wasi = wasmtime.WasiConfig()
    ptr = wasi.ptr()
    argv = [spec.program_name, *spec.args]
    if not _ffi.wasi_config_set_argv(ptr, len(argv), _c_strings(argv)):
        raise _StartError("wasmtime refused the arguments")
    env = spec.env
    if not _ffi.wasi_config_set_env(ptr, len(env), _c_strings(env), _c_strings(env.values())):
        raise _StartError("wasmtime refused the environment")
    for p in spec.preopens:
        host = os.fspath(p.host_path)
        if not os.path.isdir(host):
            raise _StartError(f"preopen {p.guest_path}: host directory {host} does not exist")
        try:
            wasi.preopen_dir(host, p.guest_path, p.writable)
        except wasmtime.WasmtimeError as err:
            raise _StartError(f"preopen {p.guest_path}: cannot open {host}: {err}") from err
    if spec.stdin_path is not None:
        try:
            wasi.stdin_file = spec.stdin_path
        except wasmtime.WasmtimeError as err:
            raise _StartError(f"stdin {spec.stdin_path}: {err}") from err
    for stream, sink, path in (
        ("stdout", spec.stdout, spec.stdout_path),
        ("stderr", spec.stderr, spec.stderr_path),
    ):
        if sink is not None and path is not None:
            raise _StartError(f"{stream}: give a sink or a path, not both")
        try:
            if sink is not None:
                _watch_output_finalizers()
                setattr(wasi, f"{stream}_custom", sink)
            elif path is not None:
                setattr(wasi, f"{stream}_file", path)
        except wasmtime.WasmtimeError as err:
            raise _StartError(f"{stream} {path}: {err}") from err
    return wasi


_finalizer_watch_registered = False


def _watch_output_finalizers() -> None:
    global _finalizer_watch_registered
    if not _finalizer_watch_registered:
        _finalizer_watch_registered = True
        atexit.register(_drain_output_finalizers)


def _drain_output_finalizers(timeout: float = 2.0) -> None:
    """Wait at exit until wasmtime has released every stdout/stderr callback.

    wasmtime drops a closed store's output streams on one of its I/O threads a little later;
    if that lands during interpreter shutdown the thread is killed mid-Rust and aborts the
    process. The bindings' slab of live callbacks empties once all are released.
    """
    handles = _wasi.CUSTOM_OUTPUTS.handles
    deadline = time.monotonic() + timeout
    while handles and time.monotonic() < deadline:
        time.sleep(0.005)


class _StartError(Exception):
    pass


def _wasi_function(name: str) -> Callable[..., None] | None:
    """A wasi_config_* C function of the bundled library, or None if it lacks it."""
    try:
        func = getattr(_ffi.dll, name)
    except AttributeError:
        return None
    func.restype = None
    func.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    return func  # type: ignore[no-any-return]


# wasmtime >= 48 denies TCP and UDP socket creation unless allowed (wasmtime PR #13936), but
# the C API that the Python bindings wrap has no wasi_config_allow_tcp/udp (up to at least
# wasmtime-py 50.0.1): there, network=True gives name lookup and an allow-all address check,
# yet creating a socket still fails with `access-denied`. Should a later library export
# them, they are called and TCP/UDP work with no other change.
_ALLOW_TCP = _wasi_function("wasi_config_allow_tcp")
_ALLOW_UDP = _wasi_function("wasi_config_allow_udp")


def network_capabilities() -> dict[str, bool]:
    """What `InstanceSpec(network=True)` gives a component with this wasmtime library."""
    return {
        "ip_name_lookup": True,
        "tcp": _ALLOW_TCP is not None,
        "udp": _ALLOW_UDP is not None,
    }


def _configure_network(wasi: wasmtime.WasiConfig, enabled: bool) -> None:
    # Every call states its setting even where it is wasmtime's default, so a changed default
    # cannot open the network of an instance that did not ask for it.
    ptr = wasi.ptr()
    if enabled:
        _bindings.wasi_config_inherit_network(ptr)
    _bindings.wasi_config_allow_ip_name_lookup(ptr, enabled)
    for allow in (_ALLOW_TCP, _ALLOW_UDP):
        if allow is not None:
            allow(ptr, enabled)


# Per-instance caps beside linear memory, so a module cannot declare its way around
# limits.memory with many memories or huge tables. Components hold a few core instances,
# memories and tables each (the preview1 adapter brings its own), hence not 1.
STORE_LIMITS = {"instances": 64, "memories": 16, "tables": 64, "table_elements": 100_000}


def run_instance(
    module: LoadedModule,
    spec: InstanceSpec,
    cancel: Cancel | None = None,
    usage: Usage | None = None,
) -> InstanceResult:
    """Instantiate `module` per `spec`, run `_start` to the end and report how it ended.

    Blocks until the guest ends: call it from a worker thread. Never raises for anything the
    guest or the spec does; those come back as an Outcome. `usage`, if given, is kept up to
    date while the guest runs: its linear memory (core modules) and this thread's CPU time.
    """
    engine = module.engine
    limit = spec.memory_limit_bytes
    t0 = time.perf_counter()
    if cancel is not None and cancel.cancelled:
        return InstanceResult(Outcome.CANCELLED, message=f"{cancel.reason} before start")
    if limit is not None and limit < module.min_memory_bytes:
        return InstanceResult(
            Outcome.OUT_OF_MEMORY,
            message=(
                f"memory limit {limit} bytes is below the {module.min_memory_bytes} bytes "
                "the module declares as its initial memory; raise the limit"
            ),
        )
    if spec.fuel is not None and not engine.config.consume_fuel:
        return InstanceResult(
            Outcome.FAILED_TO_START,
            message="a fuel limit needs an engine built with EngineConfig(consume_fuel=True)",
        )

    if usage is not None:
        usage.begin(time.thread_time())
    store = wasmtime.Store(engine.engine)
    try:
        try:
            wasi = _configure_wasi(spec)
            if module.is_component:
                _configure_network(wasi, spec.network)
            store.set_wasi(wasi)
        except _StartError as err:
            return InstanceResult(Outcome.FAILED_TO_START, message=str(err))
        if engine.config.consume_fuel:
            store.set_fuel(spec.fuel if spec.fuel is not None else _NO_FUEL_LIMIT)
        store.set_limits(memory_size=-1 if limit is None else limit, **STORE_LIMITS)
        watch: _Watch | None = None
        if spec.timeout_seconds is not None or cancel is not None or usage is not None:
            deadline = None
            if spec.timeout_seconds is not None:
                deadline = time.monotonic() + spec.timeout_seconds
            watch = _Watch(deadline, cancel, engine.tick_seconds, usage)
            handle = next(_WATCH_IDS)
            _WATCHES[handle] = watch
            _bindings.wasmtime_store_epoch_deadline_callback(
                store.ptr(), _EPOCH_CALLBACK, handle, _EPOCH_FINALIZER
            )
            store.set_epoch_deadline(watch.first_ticks())
        else:
            store.set_epoch_deadline(_NO_DEADLINE_TICKS)

        if isinstance(module, LoadedComponent):
            return _run_component(module, spec, store, watch, cancel, t0)
        try:
            instance = module.pre.instantiate(store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
            return _instantiate_failed(err, limit, t0)
        exports = instance.exports(store)
        start = exports["_start"]
        assert isinstance(start, wasmtime.Func)  # checked when the module was loaded
        memories = [m for m in exports.by_index if isinstance(m, wasmtime.Memory)]
        if watch is not None and usage is not None:
            # Raw handles, read in the epoch callback with the context it is given.
            watch.memories = [ctypes.byref(m._memory) for m in memories]
            usage.sample(_linear_memory_bytes(memories, store), None)
        t1 = time.perf_counter()
        exit_code: int | None = None
        error: Exception | None = None
        try:
            _call_start(store, start)
            exit_code = 0
        except wasmtime.ExitTrap as err:
            exit_code = err.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
            error = err
        t2 = time.perf_counter()
        peak = _linear_memory_bytes(memories, store)
        if usage is not None:  # its CPU time is read once, below: a syscall per reading
            usage.sample(peak, None)
        return _ended(error, exit_code, watch, spec, cancel, peak, (t0, t1, t2))
    finally:
        # Drop the store (and its WASI output callbacks) now, not at interpreter exit.
        store.close()
        if usage is not None:  # tearing down, and runs that failed to start, count too
            usage.sample(None, time.thread_time())


def _run_component(
    component: LoadedComponent,
    spec: InstanceSpec,
    store: wasmtime.Store,
    watch: _Watch | None,
    cancel: Cancel | None,
    t0: float,
) -> InstanceResult:
    """Instantiate a component in `store` (set up by run_instance) and call wasi:cli/run.

    Outcomes mirror the core path, except OUT_OF_MEMORY: a component's memories are not
    visible, so peak_memory_bytes is 0 and only a trap naming a memory limit maps to it; a
    guest that handles a failed allocation itself just exits with its own code.
    """
    try:
        instance = component.component_linker.instantiate(store, component.component)
        run_index = instance.get_export_index(store, component.run_export)
        run = None
        if run_index is not None:
            func_index = instance.get_export_index(store, "run", run_index)
            run = instance.get_func(store, func_index) if func_index is not None else None
    except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
        return _instantiate_failed(err, spec.memory_limit_bytes, t0)
    if run is None:
        return InstanceResult(
            Outcome.FAILED_TO_START,
            message=f"{component.run_export} has no `run` function",
            instantiate_seconds=time.perf_counter() - t0,
        )
    t1 = time.perf_counter()
    exit_code: int | None = None
    error: Exception | None = None
    try:
        returned = run(store)
        # wasi:cli/run returns result<_, _>: ok is exit code 0, err is a plain failure (1).
        exit_code = 0 if getattr(returned, "tag", "ok") == "ok" else 1
        run.post_return(store)
    except wasmtime.ExitTrap as err:
        exit_code = err.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
        error = err
    t2 = time.perf_counter()
    return _ended(error, exit_code, watch, spec, cancel, None, (t0, t1, t2))
