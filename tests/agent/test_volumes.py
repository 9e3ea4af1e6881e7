"""prepare_mounts: emptyDir, projected ConfigMap/Secret (read-only), hostPath."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmlet.api.spec import parse_spec
from wasmlet_agent.host_paths import HostPathPolicy
from wasmlet_agent.objects import ConfigError, ManifestObjects
from wasmlet_agent.volumes import (
    StorageLimit,
    Usage,
    directory_usage,
    inode_limit,
    over_limit,
    prepare_mounts,
    remove_instance_dir,
)

OBJECTS = ManifestObjects(
    [
        {"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a.txt": "hello"}},
        {"kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"pw": "x"}},
    ]
)


def spec(volumes: list[dict[str, object]], mounts: list[dict[str, object]]):  # type: ignore[no-untyped-def]
    return parse_spec(
        {"module": {"oci": {"reference": "r/x:1"}}, "volumes": volumes, "volumeMounts": mounts}
    )


def test_each_volume_kind(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    s = spec(
        [
            {"name": "scratch", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "sec", "secret": {"secretName": "sec"}},
            {"name": "host", "hostPath": {"path": str(host)}},
            {"name": "hostrw", "hostPath": {"path": str(host)}},
        ],
        [
            {"name": "scratch", "mountPath": "/data"},
            {"name": "cfg", "mountPath": "/config", "readOnly": False},
            {"name": "sec", "mountPath": "/secret"},
            {"name": "host", "mountPath": "/host"},
            {"name": "hostrw", "mountPath": "/hostrw", "readOnly": False},
        ],
    )
    inst = tmp_path / "inst"
    allow = HostPathPolicy((str(tmp_path),))
    pre = {p.guest_path: p for p in prepare_mounts(s, "default", inst, OBJECTS, allow)}
    assert pre["/data"].writable and pre["/data"].host_path.is_dir()
    assert not pre["/config"].writable  # a ConfigMap is read-only whatever the mount says
    assert (pre["/config"].host_path / "a.txt").read_text() == "hello"
    assert (pre["/secret"].host_path / "pw").read_text() == "x"
    assert not pre["/host"].writable and pre["/host"].host_path == host
    assert pre["/hostrw"].writable
    (pre["/data"].host_path / "f").write_bytes(b"12345")
    assert directory_usage(pre["/data"].host_path) == (5, 1)
    remove_instance_dir(inst)
    assert not inst.exists() and host.exists()


def test_missing_configmap_is_named(tmp_path: Path) -> None:
    s = spec([{"name": "c", "configMap": {"name": "gone"}}], [{"name": "c", "mountPath": "/c"}])
    with pytest.raises(ConfigError, match=r"spec.volumes\[0\].configMap: ConfigMap default/gone"):
        prepare_mounts(s, "default", tmp_path, OBJECTS)


def test_missing_host_directory_is_named(tmp_path: Path) -> None:
    s = spec(
        [{"name": "h", "hostPath": {"path": str(tmp_path / "nope")}}],
        [{"name": "h", "mountPath": "/h"}],
    )
    with pytest.raises(ConfigError, match=r"hostPath.path: .* is not a directory"):
        prepare_mounts(s, "default", tmp_path / "i", OBJECTS, HostPathPolicy((str(tmp_path),)))


def test_projection_is_refreshed_not_appended(tmp_path: Path) -> None:
    s = spec([{"name": "cfg", "configMap": {"name": "cfg"}}], [{"name": "cfg", "mountPath": "/c"}])
    first = ManifestObjects([{"kind": "ConfigMap", "metadata": {"name": "cfg"},
                              "data": {"a.txt": "1", "b.txt": "2"}}])  # fmt: skip
    (pre,) = prepare_mounts(s, "default", tmp_path, first)
    assert sorted(p.name for p in pre.host_path.iterdir()) == ["a.txt", "b.txt"]
    assert (pre.host_path / "a.txt").stat().st_mode & 0o777 == 0o444
    second = ManifestObjects([{"kind": "ConfigMap", "metadata": {"name": "cfg"},
                               "data": {"b.txt": "changed", "c.txt": "3"}}])  # fmt: skip
    (pre,) = prepare_mounts(s, "default", tmp_path, second)
    assert sorted(p.name for p in pre.host_path.iterdir()) == ["b.txt", "c.txt"]
    assert (pre.host_path / "b.txt").read_text() == "changed"


def test_removing_an_instance_never_follows_its_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "host-file"
    secret.write_text("host")
    secret.chmod(0o600)
    outside.chmod(0o755)
    inst = tmp_path / "inst"
    data = inst / "volumes" / "data"
    data.mkdir(parents=True)
    # What a guest could leave in its emptyDir: links to places outside it.
    (data / "file-link").symlink_to(secret)
    (data / "dir-link").symlink_to(outside, target_is_directory=True)
    remove_instance_dir(inst)
    assert not inst.exists()
    assert secret.read_text() == "host"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert outside.stat().st_mode & 0o777 == 0o755


def test_inode_limit_follows_size_limit_with_a_floor() -> None:
    assert inode_limit(1024) == 64  # the floor
    assert inode_limit(1 << 20) == 256  # one per 4 KiB
    assert inode_limit(1 << 30) == 262144


def test_over_limit_names_bytes_first_then_inodes(tmp_path: Path) -> None:
    limit = StorageLimit("scratch", tmp_path, 100, 64)
    assert over_limit(limit, Usage(100, 64)) is None
    assert over_limit(limit, Usage(101, 0)) == (
        "emptyDir scratch holds 101 bytes, over its sizeLimit of 100 bytes"
    )
    assert over_limit(limit, Usage(0, 65)) == (
        "emptyDir scratch holds 65 or more files and directories, over its limit of 64 "
        "(one per 4096 bytes of sizeLimit)"
    )


def test_usage_counts_directories_and_stops_early(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for i in range(10):
        (tmp_path / "d" / f"f{i}").write_bytes(b"ab")
    assert directory_usage(tmp_path) == (20, 11)
    assert directory_usage(tmp_path, stop_after_inodes=4).inodes == 5
