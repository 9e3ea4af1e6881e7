"""What an instance sees through a real Agent: volumes, env from objects, nothing else."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import (
    NS,
    Objects,
    RunningAgent,
    app_doc,
    configmap_doc,
    free_port,
    request,
    wait_until,
    wasm_app,
)
from wasmlet_agent.lifecycle import State
from wasmlet_agent.objects import ManifestObjects
from wasmlet_agent.standalone import desired_from_documents

FAST = {"initialSeconds": 0.1, "maxSeconds": 0.5}


def _log(agent: RunningAgent, app: str) -> str:
    return agent.api(f"/logs/{NS}/{app}?tail=1000").text


def _lines(agent: RunningAgent, app: str, prefix: str) -> list[str]:
    return [x for x in _log(agent, app).splitlines() if x.startswith(prefix)]


def test_configmap_read_only_emptydir_writable_and_no_escape(
    start: StartAgent, oci: OciModule
) -> None:
    objects = Objects([configmap_doc("input", {"input.txt": "from a configmap\nsecond\n"})])
    agent = start(objects)
    agent.apply(
        wasm_app(
            "files",
            oci("files"),
            restartPolicy="Never",
            volumes=[
                {"name": "in", "configMap": {"name": "input"}},
                {"name": "out", "emptyDir": {}},
            ],
            # readOnly: false cannot make a ConfigMap writable.
            volumeMounts=[
                {"name": "in", "mountPath": "/in", "readOnly": False},
                {"name": "out", "mountPath": "/out"},
            ],
        )
    )
    rep = agent.wait_report("files", lambda r: r.instances[0].state is State.COMPLETED, "done")
    assert rep.instances[0].exit_code == 0
    log = _log(agent, "files").splitlines()
    assert "OK read /in/input.txt: from a configmap" in log
    assert "OK write /out/output.txt" in log
    assert any(x.startswith("ERR write /in/denied.txt:") for x in log), log
    # Neither .. nor an absolute path reaches the host.
    for path in ("/in/../../../etc/passwd", "../../../etc/passwd", "/etc/passwd"):
        assert any(x.startswith(f"ERR read {path}:") for x in log), (path, log)
    assert not any(x.startswith("OK read") and "root:" in x for x in log)


def test_emptydir_lives_as_long_as_the_instance(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    agent.apply(
        wasm_app(
            "scratch",
            oci("files"),
            args=["read:/data/count", "write:/data/count=was here"],
            restartPolicy="Always",
            backoff=FAST,
            volumes=[{"name": "data", "emptyDir": {}}],
            volumeMounts=[{"name": "data", "mountPath": "/data"}],
        )
    )
    agent.wait_report("scratch", lambda r: r.instances[0].restarts >= 1, "a restart")
    # The first run finds nothing; a restarted run finds what the last one wrote.
    reads = wait_until(lambda: _lines(agent, "scratch", "OK read")[:1], "a successful read")
    assert reads == ["OK read /data/count: was here"]
    assert _lines(agent, "scratch", "ERR read /data/count")[:1]
    instance_dir = agent.config.cache_dir / "instances" / NS / "scratch"
    assert any(instance_dir.iterdir())
    agent.apply()  # the app is deleted: its instances' directories go with them
    wait_until(lambda: not any(instance_dir.iterdir()), "instance directories removed")


def test_projection_follows_the_configmap_across_restarts(
    start: StartAgent, oci: OciModule
) -> None:
    objects = Objects([configmap_doc("cfg", {"a": "1", "b": "2"})])
    agent = start(objects)
    agent.apply(
        wasm_app(
            "lister",
            oci("files"),
            args=["list:/cfg", "read:/cfg/b"],
            backoff={"initialSeconds": 0.2, "maxSeconds": 0.2},
            volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}],
            volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}],
        )
    )
    wait_until(lambda: _lines(agent, "lister", "OK list /cfg:"), "a listing")
    objects.put(configmap_doc("cfg", {"b": "changed", "c": "3"}))
    wait_until(lambda: "OK read /cfg/b: changed" in _log(agent, "lister"), "the changed ConfigMap")
    listings = {
        tuple(sorted(x.split(":", 1)[1].split())) for x in _lines(agent, "lister", "OK list")
    }
    assert ("a", "b") in listings and ("b", "c") in listings
    assert not any("a" in x and "c" in x for x in listings)  # a removed key is gone


def test_env_from_literal_configmap_and_secret(start: StartAgent, oci: OciModule) -> None:
    docs: list[dict[str, Any]] = [
        configmap_doc("settings", {"level": "debug"}),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": NS},
            "data": {"token": base64.b64encode(b"s3cr3t").decode()},
            "stringData": {"user": "wasm"},
        },
        app_doc(
            "env",
            oci("envdump"),
            restartPolicy="Never",
            env=[
                {"name": "PLAIN", "value": "literal value"},
                {
                    "name": "LEVEL",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}},
                },
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
            ],
        ),
    ]
    (app,), objects = desired_from_documents(docs)  # as standalone mode reads manifest files
    assert isinstance(objects, ManifestObjects)
    agent = start(objects)
    agent.apply(app)
    agent.wait_report("env", lambda r: r.instances[0].state is State.COMPLETED, "done")
    lines = _log(agent, "env").splitlines()
    assert {"PLAIN=literal value", "LEVEL=debug", "TOKEN=s3cr3t", "USER=wasm"} <= set(lines)
    assert "# 4 variables" in lines  # nothing of the agent's own environment
    assert "PATH" in os.environ and not any(x.startswith("PATH=") for x in lines)


def test_missing_env_source_is_named_and_recovers(start: StartAgent, oci: OciModule) -> None:
    objects = Objects()
    agent = start(objects)
    agent.apply(
        wasm_app(
            "env",
            oci("envdump"),
            restartPolicy="OnFailure",
            backoff=FAST,
            env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "x"}}}],
        )
    )
    rep = agent.wait_report("env", lambda r: r.problem is not None, "a config problem")
    assert rep.problem is not None
    reason, message = rep.problem
    assert reason == "ConfigError"
    assert "spec.env[0].valueFrom.configMapKeyRef" in message and "late" in message
    objects.put(configmap_doc("late", {"x": "arrived"}))
    agent.wait_report("env", lambda r: r.instances[0].state is State.COMPLETED, "completed")
    assert "X=arrived" in _log(agent, "env").splitlines()


def test_secret_files_stay_private_to_the_agent(start: StartAgent, oci: OciModule) -> None:
    objects = Objects(
        [
            {
                "kind": "Secret",
                "metadata": {"name": "key", "namespace": NS},
                "stringData": {"key.pem": "PRIVATE"},
            }
        ]
    )
    agent = start(objects)
    agent.apply(
        wasm_app(
            "reader",
            oci("long"),
            volumes=[{"name": "key", "secret": {"secretName": "key"}}],
            volumeMounts=[{"name": "key", "mountPath": "/key"}],
        )
    )
    agent.wait_report("reader", lambda r: r.ready == 1, "running")
    root: Path = agent.config.cache_dir / "instances"
    assert root.stat().st_mode & 0o077 == 0
    (projected,) = root.glob("default/reader/*/volumes/key/key.pem")
    assert projected.read_text() == "PRIVATE"


def test_emptydir_over_its_size_limit_stops_the_instance(start: StartAgent, oci: OciModule) -> None:
    agent = start(Objects([]))
    big = "x" * 4096
    agent.apply(
        wasm_app(
            "hoarder",
            oci("files"),
            args=[f"write:/scratch/big.txt={big}"],
            restartPolicy="Never",
            volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Ki"}}],
            volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        )
    )
    rep = agent.wait_report(
        "hoarder", lambda r: r.instances and r.instances[0].state is State.FAILED, "evicted"
    )
    inst = rep.instances[0]
    assert inst.reason == "EphemeralStorageExceeded"
    assert "emptyDir scratch holds 4096 bytes, over its sizeLimit of 1024 bytes" in inst.message
    assert any(e.reason == "EphemeralStorageExceeded" for e in agent.events_of("hoarder"))


def test_emptydir_within_its_size_limit_is_fine(start: StartAgent, oci: OciModule) -> None:
    agent = start(Objects([]))
    agent.apply(
        wasm_app(
            "modest",
            oci("files"),
            args=["write:/scratch/small.txt=ok"],
            restartPolicy="Never",
            volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Ki"}}],
            volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        )
    )
    rep = agent.wait_report(
        "modest", lambda r: r.instances and r.instances[0].state is State.COMPLETED, "done"
    )
    assert rep.instances[0].reason == "Completed"


def test_emptydir_inodes_count_against_its_size_limit(start: StartAgent, oci: OciModule) -> None:
    # A guest that makes empty files without end: no bytes, but it is stopped all the same
    # (64Ki of sizeLimit allows 16 inodes, at least 64).
    agent = start(Objects([]))
    agent.apply(
        wasm_app(
            "inodes",
            oci("scratch"),
            args=["touch:/scratch:0"],
            restartPolicy="Never",
            volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "64Ki"}}],
            volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        )
    )
    rep = agent.wait_report(
        "inodes", lambda r: r.instances and r.instances[0].state is State.FAILED, "evicted",
        timeout=30,
    )  # fmt: skip
    inst = rep.instances[0]
    assert inst.reason == "EphemeralStorageExceeded", inst
    assert "files and directories, over its limit of 64" in inst.message, inst.message
    assert "the instance was stopped" in inst.message
    assert any(e.reason == "EphemeralStorageExceeded" for e in agent.events_of("inodes"))


# With serving processes (2) the agent tells them to refuse as it would.
@pytest.mark.parametrize("processes", [0, 2])
def test_http_emptydir_over_its_size_limit_refuses_then_serves_from_empty(
    start: StartAgent, oci: OciModule, processes: int
) -> None:
    agent = start(Objects([]), http_processes=processes)
    port = free_port()
    agent.apply(
        wasm_app(
            "filler",
            oci("scratch"),
            mode="http",
            http={"port": port},
            backoff={"initialSeconds": 2, "maxSeconds": 4},
            volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "64Ki"}}],
            volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        )
    )
    agent.wait_report("filler", lambda r: r.ready == 1, "serving", timeout=60)
    # Requests share the revision's scratch space: three 32 KiB writes take it over 64 KiB.
    for _ in range(3):
        assert request(port, "/write/32").status == 200
    assert request(port, "/count").body == b"3\n"
    rep = agent.wait_report(
        "filler", lambda r: r.problem is not None and r.problem[0] == "EphemeralStorageExceeded",
        "over its sizeLimit", timeout=10,
    )  # fmt: skip
    assert rep.problem is not None
    assert "emptyDir scratch holds 98304 bytes, over its sizeLimit of 65536 bytes" in rep.problem[1]
    # Serving processes hear of it from the agent within a poll (50 ms).
    refused = wait_until(
        lambda: (r := request(port, "/count")).status == 507 and r, "507 from every server"
    )
    assert b"over its sizeLimit" in refused.body and refused.headers["retry-after"] == "1"
    assert any(e.reason == "EphemeralStorageExceeded" for e in agent.events_of("filler"))
    # After the back-off it serves again, from an empty emptyDir.
    agent.wait_report("filler", lambda r: r.ready == 1 and r.problem is None, "serving again")
    assert request(port, "/count").body == b"0\n"
