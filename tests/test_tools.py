"""A missing tool skips a test on a laptop and fails it in CI, saying what to install."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.tools import in_ci, require_tool

ROOT = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/wasmlet-test-tool"
HINT = "apt-get install wasmlet-test-tool"


def _outcome(call: Callable[[], object]) -> pytest.ExceptionInfo[BaseException]:
    """What `call` ended with, skip or fail, caught either way so neither leaks to pytest."""
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as info:
        call()
    return info


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "yes"])
def test_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    outcome = _outcome(lambda: require_tool(MISSING, HINT))
    assert outcome.type is pytest.fail.Exception, "a missing tool must fail under CI, not skip"
    assert f"{MISSING} is missing: {HINT}" in str(outcome.value)


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    outcome = _outcome(lambda: require_tool(MISSING, HINT))
    assert outcome.type is pytest.skip.Exception
    assert HINT in str(outcome.value)


def test_present_tool_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_tool("sh", "the shell").name == "sh"


def test_missing_tool_fails_the_run_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through pytest: a test needing an absent tool is a failure, not a skip."""
    pytester.makepyfile(
        f"""
        from tests.fixtures.tools import require_tool

        def test_needs_the_tool():
            require_tool({MISSING!r}, {HINT!r})
        """
    )
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{MISSING} is missing: {HINT}*CI is set*"])
