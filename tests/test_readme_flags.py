"""The README's flag reference names every flag the operator and the agent accept."""

from __future__ import annotations

import argparse
from pathlib import Path
from unittest import mock

import pytest

from wasmlet_agent import main as agent_main
from wasmlet_operator import main as operator_main

README = Path(__file__).resolve().parents[1] / "README.md"


def flags(parse_args: object) -> set[str]:
    seen: set[str] = set()

    def collect(parser: argparse.ArgumentParser, argv: object = None) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    collect(sub)
            seen.update(o for o in action.option_strings if o.startswith("--") and o != "--help")

    with mock.patch.object(argparse.ArgumentParser, "parse_args", collect):
        parse_args([])  # type: ignore[operator]
    return seen


@pytest.mark.parametrize("module", [operator_main, agent_main], ids=["operator", "agent"])
def test_every_flag_is_in_the_readme_reference(module: object) -> None:
    reference = README.read_text().split("## Flags and environment", 1)[1]
    found = flags(module.parse_args)  # type: ignore[attr-defined]
    assert len(found) > 5
    missing = sorted(f for f in found if f"`{f}`" not in reference)
    assert not missing, f"README's 'Flags and environment' lacks {missing}"
