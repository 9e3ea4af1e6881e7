"""Compiled modules linked against WASI once, so each instance only pays for instantiation.

Both kinds of Wasm binary run: WASI preview 1 core modules (`LoadedModule`) and WASI 0.2
components exporting `wasi:cli/run` (`LoadedComponent`, a LoadedModule subclass that
`LoadedModule.from_bytes` / `from_serialized` return for component input, so callers and the
compiled-artifact cache need not know which kind they hold).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import wasmtime
import wasmtime.component

from wasmlet_agent.runtime.engine import WasmEngine

WASM_MAGIC = b"\0asm"
CORE_VERSION = b"\x01\x00\x00\x00"
# Component binaries: a version u16 (0x0d while the format is pre-1.0) then layer 1.
COMPONENT_LAYER = b"\x01\x00"
CLI_RUN_PREFIX = "wasi:cli/run@0.2"
# Import namespaces `Linker.add_wasip2` provides (wasi:http is deliberately not linked).
WASIP2_PACKAGES = (
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
)
WASI_P1 = "wasi_snapshot_preview1"
PAGE_SIZE = 65536


class ModuleError(Exception):
    """A module cannot be run as given; the message says why and what to do.

    `missing_imports` lists (module, name) pairs the WASI linker cannot satisfy.
    """

    def __init__(self, message: str, *, missing_imports: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.missing_imports = missing_imports


@dataclass(frozen=True)
class ImportRef:
    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}::{self.name}"


def check_binary(wasm: bytes | bytearray, name: str = "module") -> bool:
    """Refuse anything that is not a Wasm binary before wasmtime sees it; True = a component.

    wasmtime's Python Module() would otherwise parse non-binary input as WAT text.
    """
    if not wasm.startswith(WASM_MAGIC):
        head = bytes(wasm[:8])
        raise ModuleError(
            f"{name} is not a WebAssembly binary: it starts with {head!r}, not b'\\x00asm' "
            "(check the source points at a .wasm file, not text, an archive or an HTML page)"
        )
    version = bytes(wasm[4:8])
    if version == CORE_VERSION:
        return False
    if len(version) == 4 and version[2:] == COMPONENT_LAYER:
        return True
    raise ModuleError(f"{name} has unsupported WebAssembly binary version {version!r}")


class LoadedModule:
    """A compiled module, its WASI linker and an InstancePre, ready for many instances.

    Thread-safe to share: every instance gets its own Store.
    """

    is_component = False

    def __init__(self, engine: WasmEngine, module: wasmtime.Module, name: str = "module") -> None:
        self.engine = engine
        self.module = module
        self.name = name
        exports = {e.name: e.type for e in module.exports}
        start = exports.get("_start")
        if not isinstance(start, wasmtime.FuncType):
            kind = "a reactor (it exports `_initialize`)" if "_initialize" in exports else ""
            raise ModuleError(
                f"{name} exports no `_start` function, so it is not a WASI command"
                + (f"; it is {kind}" if kind else "")
                + ": build it as a command (a `main` function) to run it"
            )
        if start.params or start.results:
            raise ModuleError(
                f"{name} exports `_start` with parameters or results; a WASI command's "
                "`_start` takes and returns nothing: build it as a command to run it"
            )
        # Smallest linear memory the module needs, to refuse a too-small limit up front.
        self.min_memory_bytes = sum(
            t.limits.min * PAGE_SIZE for t in exports.values() if isinstance(t, wasmtime.MemoryType)
        )
        self.linker = wasmtime.Linker(engine.engine)
        self.linker.define_wasi()
        try:
            self.pre = self.linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as err:
            missing = self._unresolved_imports()
            if missing:
                names = ", ".join(f"`{m}`" for m in missing)
                wasi = any(m.module == WASI_P1 for m in missing)
                raise ModuleError(
                    f"{name} imports {names}, which this runtime does not provide"
                    + (
                        " (not a WASI preview 1 function: rebuild against wasi-libc/"
                        "wasm32-wasip1 or remove the import)"
                        if wasi
                        else " (only `wasi_snapshot_preview1` functions are available)"
                    ),
                    missing_imports=tuple((m.module, m.name) for m in missing),
                ) from err
            raise ModuleError(f"{name} cannot be linked against WASI: {err}") from err

    def _unresolved_imports(self) -> list[ImportRef]:
        """Imports the WASI linker has no definition for (called on the error path only)."""
        store = wasmtime.Store(self.engine.engine)
        missing = []
        try:
            for imp in self.module.imports:
                field = imp.name or ""
                try:
                    self.linker.get(store, imp.module, field)
                except wasmtime.WasmtimeError:
                    missing.append(ImportRef(imp.module, field))
        finally:
            store.close()
        return missing

    @property
    def imports(self) -> list[ImportRef]:
        return [ImportRef(i.module, i.name or "") for i in self.module.imports]

    @classmethod
    def from_bytes(
        cls, engine: WasmEngine, wasm: bytes | bytearray, name: str = "module"
    ) -> LoadedModule:
        """Compile a core module or component (milliseconds to seconds: cache `serialize()`)."""
        if check_binary(wasm, name):
            return LoadedComponent.compile(engine, wasm, name)
        try:
            module = wasmtime.Module(engine.engine, bytes(wasm))
        except wasmtime.WasmtimeError as err:
            raise ModuleError(f"{name} is not a valid WebAssembly module: {err}") from err
        return cls(engine, module, name)

    @classmethod
    def from_file(cls, engine: WasmEngine, path: str | os.PathLike[str]) -> LoadedModule:
        with open(path, "rb") as f:
            return cls.from_bytes(engine, f.read(), name=os.fspath(path))

    @classmethod
    def from_serialized(
        cls, engine: WasmEngine, artifact: bytes, name: str = "module"
    ) -> LoadedModule:
        """Load an artifact made by `serialize()` with the same engine fingerprint.

        Only pass artifacts this agent wrote itself: deserializing runs native code unchecked.
        """
        try:
            module = wasmtime.Module.deserialize(engine.engine, artifact)
        except wasmtime.WasmtimeError as err:
            # The cache keys artifacts by digest, not kind: a component's fails here first.
            try:
                component = wasmtime.component.Component.deserialize(engine.engine, artifact)
            except wasmtime.WasmtimeError:
                pass
            else:
                return LoadedComponent(engine, component, name)
            raise ModuleError(
                f"precompiled {name} does not fit this engine ({engine.fingerprint}): {err}; "
                "recompile it from the module bytes"
            ) from err
        return cls(engine, module, name)

    @classmethod
    def from_serialized_file(cls, engine: WasmEngine, path: str | os.PathLike[str]) -> LoadedModule:
        """Like from_serialized, but maps the file instead of copying it."""
        try:
            module = wasmtime.Module.deserialize_file(engine.engine, os.fspath(path))
        except wasmtime.WasmtimeError as err:
            try:
                component = wasmtime.component.Component.deserialize_file(
                    engine.engine, os.fspath(path)
                )
            except wasmtime.WasmtimeError:
                pass
            else:
                return LoadedComponent(engine, component, os.fspath(path))
            raise ModuleError(
                f"precompiled {os.fspath(path)} does not fit this engine "
                f"({engine.fingerprint}): {err}; recompile it from the module bytes"
            ) from err
        return cls(engine, module, os.fspath(path))

    def serialize(self) -> bytes:
        """The precompiled artifact, for a cache keyed by (digest, engine fingerprint)."""
        return bytes(self.module.serialize())


class LoadedComponent(LoadedModule):
    """A compiled WASI 0.2 component that exports `wasi:cli/run`, with its WASI 0.2 linker.

    The Python bindings have no component InstancePre, so each instance links anew (the
    linker is built once here). `module`, `pre` and `linker` of the core kind do not exist;
    `min_memory_bytes` is 0 because a component's core memories are not visible from outside.
    Outbound sockets depend on the instance's `InstanceSpec.network`, not on the component.
    """

    is_component = True

    def __init__(  # deliberately not calling LoadedModule.__init__: nothing core applies
        self, engine: WasmEngine, component: wasmtime.component.Component, name: str = "component"
    ) -> None:
        self.engine = engine
        self.component = component
        self.name = name
        self.min_memory_bytes = 0
        ctype = component.type
        exports = list(ctype.exports(engine.engine))
        imports = list(ctype.imports(engine.engine))
        run = [e for e in exports if e.startswith(CLI_RUN_PREFIX)]
        if not run:
            raise ModuleError(
                f"{name} is a component that does not export `wasi:cli/run@0.2.x` (it exports "
                f"{', '.join(f'`{e}`' for e in exports) or 'nothing'}), so it is not a WASI "
                "command: build it as a command (e.g. wasm32-wasip2, or a wasip1 command "
                "adapted with the preview1 *command* adapter)"
            )
        self.run_export = run[0]
        missing = [i for i in imports if not i.startswith(WASIP2_PACKAGES)]
        if missing:
            raise ModuleError(
                f"{name} imports {', '.join(f'`{m}`' for m in missing)}, which this runtime "
                "does not provide (only WASI 0.2 cli, clocks, filesystem, io, random and sockets "
                "are available)",
                missing_imports=tuple((m, "") for m in missing),
            )
        self._import_names = imports
        self.component_linker = wasmtime.component.Linker(engine.engine)
        self.component_linker.add_wasip2()

    @property
    def imports(self) -> list[ImportRef]:
        """One entry per imported interface (`module` is its name, `name` is empty)."""
        return [ImportRef(i, "") for i in self._import_names]

    @classmethod
    def compile(
        cls, engine: WasmEngine, wasm: bytes | bytearray, name: str = "component"
    ) -> LoadedComponent:
        try:
            component = wasmtime.component.Component(engine.engine, bytes(wasm))
        except wasmtime.WasmtimeError as err:
            raise ModuleError(f"{name} is not a valid WebAssembly component: {err}") from err
        return cls(engine, component, name)

    def serialize(self) -> bytes:
        return bytes(self.component.serialize())


def compile_artifact(engine: WasmEngine, wasm: bytes | bytearray) -> bytes:
    """Compile module bytes to a precompiled artifact (fits `ModuleCache.get_or_compile`)."""
    return LoadedModule.from_bytes(engine, wasm).serialize()
