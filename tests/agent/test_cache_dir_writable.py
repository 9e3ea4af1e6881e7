"""The agent refuses to start on a cache directory it cannot write, naming the cause (the
crash this replaces: `PermissionError: '/var/lib/wasmlet/modules'` from a root-owned hostPath
while the image runs as uid 65532)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.tools import missing_tool
from wasmlet_agent.cache import Cache, unwritable_reason
from wasmlet_agent.main import main

AGENT_UID = 65532


@dataclass
class Exit:
    returncode: int
    stderr: str


def agent(cache_dir: Path) -> Exit:
    return as_agent_uid(lambda: main(["run", "--cache-dir", str(cache_dir), "/nonexistent.yaml"]))


def as_agent_uid(fn: Callable[[], int]) -> Exit:
    """The agent's main() in a forked child that dropped to the image's uid (the venv's
    interpreter under /root is not executable by that uid, so no exec)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.dup2(write, 2)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            os.setgid(AGENT_UID)
            os.setuid(AGENT_UID)
            code = fn()
        except BaseException as e:  # report anything, then leave without pytest's cleanup
            print(f"child raised {e!r}", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        stderr = f.read()
    _, status = os.waitpid(pid, 0)
    return Exit(os.waitstatus_to_exitcode(status), stderr)


@pytest.fixture
def root_owned() -> Iterator[Path]:
    if os.geteuid() != 0:
        # Skips locally; under CI=true a run without root fails, naming what it needs.
        missing_tool("needs root to create a root-owned directory and drop to uid 65532; "
                     "run the tests as root (CI does)")  # fmt: skip
    parent = Path(tempfile.mkdtemp(prefix="wasmlet-cache-test-"))
    parent.chmod(0o755)  # reachable by uid 65532, like /var/lib
    cache = parent / "wasmlet"
    cache.mkdir(mode=0o755)  # what kubelet's DirectoryOrCreate hostPath leaves
    yield cache
    shutil.rmtree(parent)


def test_root_owned_cache_dir_stops_the_agent_with_the_cause(root_owned: Path) -> None:
    done = agent(root_owned)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cache directory {root_owned} is not writable by this agent (uid 65532)" in done.stderr
    assert "owned by uid 0 with mode 0755" in done.stderr
    assert f"chown -R 65532 {root_owned}" in done.stderr


def test_after_the_init_containers_chown_the_agent_starts(root_owned: Path) -> None:
    os.chown(root_owned, AGENT_UID, AGENT_UID)  # what deploy/'s cache-owner does

    def start_cache() -> int:
        if unwritable_reason(root_owned) is not None:
            return 2
        Cache(root_owned / "modules")  # what the agent does next
        return 0

    assert as_agent_uid(start_cache).returncode == 0
    assert (root_owned / "modules").is_dir()
    assert (root_owned / "modules").stat().st_uid == AGENT_UID


def test_a_missing_directory_is_fine_when_its_parent_is_writable(tmp_path: Path) -> None:
    assert unwritable_reason(tmp_path / "a" / "b") is None


def test_an_unreachable_parent_is_named(root_owned: Path) -> None:
    root_owned.parent.chmod(0o700)
    done = agent(root_owned / "sub")
    assert done.returncode == 2, done.stderr
    assert f"{root_owned / 'sub'} cannot be reached: Permission denied" in done.stderr


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("")
    reason = unwritable_reason(tmp_path / "cache")
    assert reason is not None and f"{tmp_path / 'cache'} is not a directory" in reason
