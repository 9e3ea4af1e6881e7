"""`wasmlet run` and `wasmlet dev` reach their components through entry points, and say what to
install when a component is absent (the runtime image has no dev tooling)."""

from __future__ import annotations

import sys

import pytest

from wasmlet import cli


def test_dev_without_the_dev_tooling_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "wasmlet_dev", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "wasmlet_dev.main", raising=False)
    assert cli.main(["dev", "up"]) == 2
    err = capsys.readouterr().err
    assert "wasmlet dev needs the development tooling" in err
    assert "pip install -e '.[dev]' from a checkout" in err


def test_run_dispatches_to_the_agent_entry_point(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--help"])
    assert info.value.code == 0
    assert "wasmlet-agent run" in capsys.readouterr().out
