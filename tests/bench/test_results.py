"""A benchmark that fails never overwrites the committed results of its section."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from bench.__main__ import commit_results, merge_results
from bench.common import Json
from bench.report import BEGIN, END

MACHINE: Json = {
    "cpu": "test", "cpus": 2, "memory_gib": 1, "kernel": "k", "python": "3", "wasmtime_py": "50",
    "wasmtime_cli": "49", "aiohttp": "3", "wrk": "4", "hyperfine": "1", "vm_max_map_count": 1,
    "commit": "abc",
}  # fmt: skip


def _bench(title: str) -> types.ModuleType:
    mod = types.ModuleType(title)
    mod.TITLE = title  # type: ignore[attr-defined]
    mod.render = lambda res: f"{title} value={res['value']}"  # type: ignore[attr-defined]
    mod.verdict = lambda res: [f"{title}: {res['value']}"]  # type: ignore[attr-defined]
    return mod


def _entry(value: int) -> Json:
    return {"value": value, "measured_at": "t", "command": "c", "elapsed": 1.0}


BENCHMARKS = {"alpha": _bench("alpha"), "beta": _bench("beta")}


@pytest.fixture
def committed(tmp_path: Path) -> tuple[Path, Path]:
    results_dir, md = tmp_path / "results", tmp_path / "RESULTS.md"
    md.write_text(f"# Results\n\nhand-written\n\n{BEGIN}\n{END}\n")
    commit_results("agent", MACHINE, {"alpha": _entry(1), "beta": _entry(2)}, BENCHMARKS,
                   results_dir, md)  # fmt: skip
    return results_dir / "agent.json", md


def test_a_failed_run_leaves_the_committed_files_untouched(
    committed: tuple[Path, Path],
) -> None:
    path, md = committed
    before = path.read_bytes(), md.read_bytes()
    failed = {"alpha": {"error": "RuntimeError: wrk not found", **_entry(0)}}
    commit_results("agent", MACHINE, failed, BENCHMARKS, path.parent, md)
    assert (path.read_bytes(), md.read_bytes()) == before
    assert "alpha value=1" in md.read_text()


def test_a_partly_failed_run_replaces_only_the_sections_that_succeeded(
    committed: tuple[Path, Path],
) -> None:
    path, md = committed
    run = {"alpha": {"error": "boom", **_entry(0)}, "beta": _entry(20)}
    commit_results("agent", MACHINE, run, BENCHMARKS, path.parent, md)
    kept = json.loads(path.read_text())["benchmarks"]
    assert kept["alpha"]["value"] == 1 and "error" not in kept["alpha"]
    assert kept["beta"]["value"] == 20
    text = md.read_text()
    assert "alpha value=1" in text and "beta value=20" in text and "Failed" not in text
    assert text.startswith("# Results\n\nhand-written\n")
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_merge_keeps_order_and_drops_a_first_failure() -> None:
    kept = {"beta": _entry(2)}
    merged = merge_results(kept, {"alpha": {"error": "x"}, "beta": _entry(3)}, ["alpha", "beta"])
    assert merged == {"beta": _entry(3)}
