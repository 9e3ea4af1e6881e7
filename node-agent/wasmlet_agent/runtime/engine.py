"""One wasmtime Engine per agent, with the epoch clock that lets wall-clock limits stop guests."""

from __future__ import annotations

import hashlib
import json
import platform
import threading
from dataclasses import asdict, dataclass
from importlib import metadata

import wasmtime

# Epoch deadlines are counted in ticks of this clock; 10 ms keeps timeouts tight for ~100
# wake-ups a second.
DEFAULT_TICK_SECONDS = 0.01


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings. Every field that changes compiled code goes into the fingerprint."""

    consume_fuel: bool = True  # lets an InstanceSpec cap instructions; costs some speed
    cranelift_opt_level: str = "speed"  # "none" | "speed" | "speed_and_size"
    parallel_compilation: bool = True
    tick_seconds: float = DEFAULT_TICK_SECONDS  # not in the fingerprint: runtime only

    def wasmtime_config(self) -> wasmtime.Config:
        config = wasmtime.Config()
        config.epoch_interruption = True  # always: timeouts and cancellation rely on it
        config.consume_fuel = self.consume_fuel
        config.cranelift_opt_level = self.cranelift_opt_level
        config.parallel_compilation = self.parallel_compilation
        return config


def wasmtime_version() -> str:
    return metadata.version("wasmtime")


def engine_fingerprint(config: EngineConfig | None = None) -> str:
    """A file-name-safe key for artifacts this engine can deserialize.

    `Module.deserialize` only accepts artifacts from the same wasmtime version, CPU architecture
    and code-affecting settings, so all of them are in the key.
    """
    cfg = config or EngineConfig()
    settings = asdict(cfg)
    del settings["tick_seconds"], settings["parallel_compilation"]
    settings["epoch_interruption"] = True
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"wasmtime-{wasmtime_version()}-{platform.machine()}-{digest}"


class WasmEngine:
    """The agent's wasmtime Engine plus the background thread that advances its epoch.

    Epoch deadlines only fire while the ticker runs; `start()` it before running guests with a
    timeout or a Cancel token (the constructor does unless `start=False`).
    """

    def __init__(self, config: EngineConfig | None = None, *, start: bool = True) -> None:
        self.config = config or EngineConfig()
        if self.config.tick_seconds <= 0:
            raise ValueError(f"tick_seconds must be > 0, got {self.config.tick_seconds}")
        self.engine = wasmtime.Engine(self.config.wasmtime_config())
        self.fingerprint = engine_fingerprint(self.config)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        if start:
            self.start()

    @property
    def tick_seconds(self) -> float:
        return self.config.tick_seconds

    @property
    def ticking(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the epoch ticker (idempotent)."""
        with self._lock:
            if self.ticking:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._tick, name="wasmlet-epoch-ticker", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the ticker and wait for it; running guests then keep their remaining ticks."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join()

    def _tick(self) -> None:
        # Event.wait doubles as the sleep, so stop() returns within one tick.
        while not self._stop.wait(self.config.tick_seconds):
            self.engine.increment_epoch()

    def __enter__(self) -> WasmEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
