"""The wasmtime calls of an instance's set-up and tear-down, made without releasing the GIL.

The bindings reach wasmtime through ctypes.CDLL, which releases the GIL around every call. An
instance per request makes ~24 such calls, and all but two take well under a microsecond;
with the event loop and other workers waiting, each release hands the GIL to another thread,
a context switch and a cold cache per call. Here the short calls go through a PyDLL handle
of the same library (same functions, same argtypes) and keep the GIL; the ones that run
guest code (instantiate, which runs a start function, and func_call) still release it, so a
guest never holds up the other threads.
"""

from __future__ import annotations

import ctypes

from wasmtime import _bindings, _ffi

# Called once per instance (see tests/agent/runtime/test_gil.py): none of them runs guest
# code or blocks for longer than opening a stdio file.
SHORT_CALLS = (
    "wasmtime_store_new",
    "wasmtime_store_context",
    "wasmtime_store_limiter",
    "wasmtime_store_epoch_deadline_callback",
    "wasmtime_store_delete",
    "wasmtime_context_set_wasi",
    "wasmtime_context_set_fuel",
    "wasmtime_context_set_epoch_deadline",
    "wasi_config_new",
    "wasi_config_set_argv",
    "wasi_config_set_env",
    "wasi_config_set_stdin_file",
    "wasi_config_set_stdout_file",
    "wasi_config_set_stderr_file",
    "wasi_config_preopen_dir",
    "wasmtime_instance_export_nth",
    "wasmtime_memory_data_size",
    "wasmtime_func_type",
    "wasm_functype_params",
    "wasm_functype_results",
    "wasm_functype_delete",
)

_installed = False


def install() -> None:
    """Route SHORT_CALLS through a GIL-holding handle (idempotent; names the bindings lack
    are left as they are)."""
    global _installed
    if _installed:
        return
    _installed = True
    library = ctypes.PyDLL(_ffi.dll._name)  # already loaded: the same handle and functions
    for name in SHORT_CALLS:
        current = getattr(_bindings, f"_{name}", None)
        if current is None:
            continue
        holding = getattr(library, name)
        holding.restype = current.restype
        holding.argtypes = current.argtypes
        setattr(_bindings, f"_{name}", holding)


def holds_gil(name: str) -> bool:
    """Whether the bindings' call `name` keeps the GIL (for tests)."""
    func = getattr(_bindings, f"_{name}")
    return bool(func._flags_ & ctypes._FUNCFLAG_PYTHONAPI)  # type: ignore[attr-defined]
