"""The wasmlet image as built from the Dockerfile FROM the locally built base (the first step
of the real-node tier): it runs both commands read-only as uid 65532 with no capabilities,
carries its OCI labels and has no compiler."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fixtures.tools import require_tool
from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_dev.images import IMAGE, DockerEngine, image_tarball, package_version

pytestmark = [pytest.mark.e2e, pytest.mark.node]
INSTALL = "apt-get install docker.io debootstrap (hack/install-deps.sh does)"


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    for tool in ("dockerd", "docker", "debootstrap"):
        require_tool(tool, INSTALL)
    tarball = image_tarball()  # cached: built once per change of the context
    with DockerEngine() as engine:
        engine.run("load", "-q", "-i", str(tarball))
        yield engine


def run(engine: DockerEngine, *args: str) -> str:
    return engine.run("run", "--rm", "--read-only", "--network=none", "--cap-drop=ALL", *args)


def test_both_commands_run_read_only_without_capabilities(engine: DockerEngine) -> None:
    assert "{run,node}" in run(engine, IMAGE, "--help")
    assert "--health-port" in run(engine, "--entrypoint", "wasmlet-operator", IMAGE, "--help")
    uid = run(
        engine, "--entrypoint", "python3", IMAGE, "-c", "import os, wasmtime; print(os.getuid())"
    )
    assert uid.strip() == "65532"
    # kopf names the operator after the user: the uid needs a passwd entry.
    user = run(
        engine, "--entrypoint", "python3", IMAGE, "-c", "import getpass; print(getpass.getuser())"
    )
    assert user.strip() == "wasmlet"


def test_labels_version_and_no_compiler(engine: DockerEngine) -> None:
    config = json.loads(engine.run("image", "inspect", IMAGE))[0]["Config"]
    assert config["User"] == "65532:65532"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == package_version(repo_root())
    assert labels["org.opencontainers.image.title"] == "wasmlet"
    found = run(engine, "--entrypoint", "sh", IMAGE, "-c", "command -v gcc cc clang make || true")
    assert found.strip() == ""
