"""Guest output files: kubelet's layout, rotation by size with kubelet's names, private modes,
and the removal of departed revisions' directories."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from wasmlet_agent.runtime.logfiles import (
    LogDirs,
    LogFile,
    Rotation,
    app_dir_name,
    expired_rotations,
    plan_gc,
    rotated_name,
    should_rotate,
)
from wasmlet_agent.runtime.logs import LogBuffer

NOON = 1_764_590_400.0  # 2025-12-01T12:00:00Z


@pytest.mark.parametrize(
    ("size", "incoming", "rotate"),
    [(0, 5000, False), (900, 100, False), (900, 101, True), (1000, 1, True), (10, 0, False)],
)
def test_rotation_is_due_when_a_write_would_pass_the_size(
    size: int, incoming: int, rotate: bool
) -> None:
    assert should_rotate(size, incoming, 1000) is rotate


def test_rotated_names_follow_the_kubelet_and_never_collide() -> None:
    assert rotated_name(NOON, []) == "0.log.20251201-120000"
    assert rotated_name(NOON, ["0.log.20251201-120000"]) == "0.log.20251201-120000.1"
    taken = ["0.log.20251201-120000", "0.log.20251201-120000.1"]
    assert rotated_name(NOON, taken) == "0.log.20251201-120000.2"


def test_expired_rotations_keep_the_newest() -> None:
    names = ["0.log", "0.log.20251201-120001", "0.log.20251201-120000.1",
             "0.log.20251201-120000", "0.log.20251130-230000"]  # fmt: skip
    assert expired_rotations(names, 3) == ["0.log.20251130-230000", "0.log.20251201-120000"]
    assert expired_rotations(names, 10) == []


def test_plan_gc_waits_a_grace_after_a_revision_leaves() -> None:
    present = ["ns_app_r1", "ns_app_r2", "lost+found", "odd_name"]
    remove, seen = plan_gc(present, {"ns_app_r1"}, {}, now=100.0, grace=60.0)
    assert remove == [] and seen == {"ns_app_r2": 100.0}  # not ours: never touched
    remove, seen = plan_gc(present, {"ns_app_r1"}, seen, now=159.0, grace=60.0)
    assert remove == [] and seen == {"ns_app_r2": 100.0}
    remove, seen = plan_gc(present, {"ns_app_r1"}, seen, now=160.0, grace=60.0)
    assert remove == ["ns_app_r2"] and seen == {}
    # Live again before its grace ended: kept, and its clock starts over should it leave.
    _, seen = plan_gc(present, {"ns_app_r1"}, {}, now=0.0, grace=60.0)
    remove, seen = plan_gc(present, {"ns_app_r1", "ns_app_r2"}, seen, now=30.0, grace=60.0)
    assert remove == [] and seen == {}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_file_rotates_by_size_keeps_max_files_and_is_private(tmp_path: Path) -> None:
    os.umask(0o022)
    dirs = LogDirs(tmp_path / "pods", Rotation(max_bytes=1000, max_files=3))
    dirs.prepare()
    file = dirs.file("team-a", "web", "0123456789abcdef", "web-012345-0")
    assert file is not None
    buf = LogBuffer(file=file)
    line = b"x" * 99 + b"\n"  # 100 bytes of output, ~146 in the file
    for _ in range(30):
        buf.write("stdout", line * 2)
    buf.close()
    home = tmp_path / "pods" / app_dir_name("team-a", "web", "0123456789abcdef")
    directory = home / "web-012345-0"
    names = sorted(os.listdir(directory))
    assert names[0] == "0.log" and len(names) == 3, names  # the current file and 2 rotated
    assert all(n.startswith("0.log.") for n in names[1:])
    for name in names:
        assert (directory / name).stat().st_size <= 1000
        assert mode(directory / name) == 0o600
    for d in (tmp_path / "pods", home, directory):
        assert mode(d) == 0o700, d
    last = (directory / "0.log").read_bytes().splitlines()[-1].split(b" ", 3)
    assert last[1:] == [b"stdout", b"F", b"x" * 99]


def test_file_appends_after_a_restart_and_counts_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "ns_a_r" / "i" / "0.log"
    first = LogFile(path, Rotation(max_bytes=100, max_files=2))
    first.append(b"a" * 80)
    first.close()
    again = LogFile(path, Rotation(max_bytes=100, max_files=2))
    again.append(b"b" * 30)  # 80 + 30 > 100: rotates before writing
    again.close()
    assert path.read_bytes() == b"b" * 30
    (rotated,) = [p for p in path.parent.iterdir() if p.name != "0.log"]
    assert rotated.read_bytes() == b"a" * 80


def test_a_failing_disk_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    file = LogFile(blocker / "x" / "0.log", Rotation())
    file.append(b"lost\n")  # logged once, not raised: the guest and the reader go on


def test_collect_removes_departed_revisions_after_the_grace(tmp_path: Path) -> None:
    dirs = LogDirs(tmp_path, gc_grace=10.0)
    for rev in ("r1", "r2"):
        file = dirs.file("ns", "app", rev, "app-r-0")
        assert file is not None
        file.append(b"line\n")
        file.close()
    (tmp_path / "not-ours").mkdir()
    assert dirs.collect([("ns", "app", "r1")], now=1000.0) == []
    assert dirs.collect([("ns", "app", "r1")], now=1010.0) == ["ns_app_r2"]
    assert sorted(os.listdir(tmp_path)) == ["not-ours", "ns_app_r1"]
    assert LogDirs(None).file("ns", "app", "r1", "i") is None
