"""Guest output through pipes: whole in the log when a run ends, live while a run lasts."""

from __future__ import annotations

import threading
from collections.abc import Callable

from wasmlet_agent.runtime import Cancel, InstanceResult, InstanceSpec, LoadedModule, run_instance
from wasmlet_agent.runtime.logs import LogBuffer
from wasmlet_agent.runtime.outputs import OutputReader
from wasmlet_dev.waits import wait_until


def _run(reader: OutputReader, module: LoadedModule, logs: LogBuffer, *args: str,
         cancel: Cancel | None = None) -> InstanceResult:  # fmt: skip
    capture = reader.attach(logs.write)
    try:
        spec = InstanceSpec(
            args=args, stdout_path=capture.stdout_path, stderr_path=capture.stderr_path
        )
        return run_instance(module, spec, cancel)
    finally:
        capture.finish()


def test_a_short_run_is_whole_in_the_log_by_finish_with_its_streams_apart(
    load: Callable[[str], LoadedModule],
) -> None:
    reader = OutputReader(delay=60)  # the reader thread never takes these runs
    first = LogBuffer()
    assert _run(reader, load("hello"), first).succeeded
    assert first.tail()[0].text == "hello from wasm"
    for _ in range(50):  # pipes are reused: nothing of one run leaks into the next
        out, err = LogBuffer(), LogBuffer()
        assert _run(reader, load("hello"), out).succeeded
        assert _run(reader, load("exit"), err, "3").exit_code == 3
        assert [(line.stream, line.text) for line in out.tail()] == [
            (line.stream, line.text) for line in first.tail()
        ]
        assert {line.stream for line in out.tail()} == {"stdout"}
        assert [(line.stream, line.text) for line in err.tail()] == [("stderr", "exiting with 3")]
    assert reader.watched == 0


def test_a_long_run_reaches_the_log_while_it_runs(load: Callable[[str], LoadedModule]) -> None:
    reader = OutputReader(delay=0.01)
    logs, cancel = LogBuffer(), Cancel()
    results: list[InstanceResult] = []
    runner = threading.Thread(
        target=lambda: results.append(_run(reader, load("long"), logs, cancel=cancel))
    )
    runner.start()
    try:
        wait_until(lambda: len(logs.tail()) >= 3, "three ticks in the log while `long` runs")
        assert not results and reader.watched == 2
        assert [line.text for line in logs.tail(3)] == ["tick 0", "tick 1", "tick 2"]
    finally:
        cancel.cancel()
        runner.join(30)
    assert results and reader.watched == 0
