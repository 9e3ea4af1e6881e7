"""The agent's own hostPath check: its directories, system paths, symlinks and allowed prefixes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasmlet.api.placements import Reason
from wasmlet.api.spec import parse_spec
from wasmlet_agent.host_paths import HostPathPolicy, check_host_path, parse_prefixes
from wasmlet_agent.objects import ConfigError, ManifestObjects
from wasmlet_agent.volumes import prepare_mounts

AGENT = ("/var/lib/wasmlet",)
LINKS = {"/srv/data/link": "/var/lib/wasmlet/instances", "/srv/data/up": "/etc"}


def fake_resolve(path: str) -> str:
    for link, target in LINKS.items():
        if path == link or path.startswith(link + "/"):
            return target + path[len(link) :]
    return os.path.normpath(path)


@pytest.mark.parametrize(
    ("path", "allowed", "refused_because"),
    [
        ("/srv/data/app", ["/srv/data"], None),
        ("/srv/data", ["/srv/data/"], None),  # the prefix itself, trailing slash or not
        ("/srv/database", ["/srv/data"], "outside the prefixes"),  # component-wise
        ("/srv/data/app", [], "allows no hostPath"),  # default: nothing allowed
        ("/srv/data/../../etc", ["/srv/data"], "must not contain '..'"),
        ("relative", ["/"], "must be absolute"),
        ("/var/lib/wasmlet/instances/team-a", ["/var/lib"], "agent's own directory"),
        ("/var/lib", ["/var"], "agent's own directory"),  # contains the agent's directory
        ("/srv/data/link/team-a", ["/srv/data"], "resolves to /var/lib/wasmlet"),
        ("/srv/data/up", ["/srv/data"], "outside the prefixes"),  # symlink out of the prefix
        ("/proc/1/root", ["/"], "/proc"),
        ("/", ["/"], "contains /proc"),
        ("/dev/shm", ["/dev"], "/dev"),
        ("/var/run/secrets/kubernetes.io", ["/var"], "/var/run/secrets"),
        ("/run/secrets", ["/run"], "/run/secrets"),
        ("/sys/fs", ["/sys"], "/sys"),
    ],
)
def test_check_host_path(path: str, allowed: list[str], refused_because: str | None) -> None:
    why = check_host_path(path, allowed, AGENT, resolve=fake_resolve)
    if refused_because is None:
        assert why is None
    else:
        assert why is not None and refused_because in why, why


def test_a_real_symlink_into_the_agents_directory_is_refused(tmp_path: Path) -> None:
    agent_dir, allowed = tmp_path / "agent", tmp_path / "shared"
    (agent_dir / "instances").mkdir(parents=True)
    allowed.mkdir()
    (allowed / "sneaky").symlink_to(agent_dir / "instances")
    why = check_host_path(str(allowed / "sneaky"), [str(allowed)], [str(agent_dir)])
    assert why is not None and "agent's own directory" in why
    (allowed / "ok").mkdir()
    assert check_host_path(str(allowed / "ok"), [str(allowed)], [str(agent_dir)]) is None


def test_prefixes_file_is_read_on_each_use(tmp_path: Path) -> None:
    listing = tmp_path / "allowedPrefixes"
    policy = HostPathPolicy(("/flag",), prefixes_file=listing)
    assert policy.prefixes() == ("/flag",)  # no file yet
    listing.write_text("# shared data\n/srv/data\n\n  /mnt/x  # scratch\n")
    assert policy.prefixes() == ("/flag", "/srv/data", "/mnt/x")
    assert parse_prefixes("") == ()


def test_prepare_mounts_refuses_with_reason_and_field(tmp_path: Path) -> None:
    (tmp_path / "h").mkdir()
    host = {"name": "h", "hostPath": {"path": str(tmp_path / "h")}}
    s = parse_spec(
        {
            "module": {"oci": {"reference": "r/x:1"}},
            "volumes": [{"name": "e", "emptyDir": {}}, host],
            "volumeMounts": [{"name": "h", "mountPath": "/h"}],
        }
    )
    with pytest.raises(ConfigError) as err:
        prepare_mounts(s, "default", tmp_path / "i", ManifestObjects([]))
    assert err.value.reason == Reason.HOST_PATH_FORBIDDEN
    assert str(err.value).startswith("spec.volumes[1].hostPath.path: ")
    assert "allows no hostPath" in str(err.value)
    (pre,) = prepare_mounts(
        s, "default", tmp_path / "i", ManifestObjects([]), HostPathPolicy((str(tmp_path),))
    )
    assert pre.host_path == (tmp_path / "h").resolve()
