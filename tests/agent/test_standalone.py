"""Standalone mode: the agent API's apps and logs, and `wasmlet run FILES` as a real process."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import yaml

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import app_doc, free_port, request, wait_until, wasm_app
from wasmlet_agent.standalone import desired_from_documents


def test_api_apps_and_logs(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    agent.apply(
        wasm_app("ticker", oci("long"), replicas=2),
        wasm_app("greeter", oci("hello"), args=["x"], restartPolicy="OnFailure"),
    )
    ticker = agent.wait_report("ticker", lambda r: r.ready == 2, "running")
    agent.wait_report("greeter", lambda r: r.instances[0].state == "Completed", "completed")

    apps = {a["name"]: a for a in json.loads(agent.api("/apps").text)}
    assert set(apps) == {"ticker", "greeter"}
    assert apps["ticker"]["ready"] == 2 and apps["ticker"]["desired"] == 2
    assert apps["ticker"]["digest"] == ticker.digest
    assert {i["state"] for i in apps["ticker"]["instances"]} == {"Running"}
    assert apps["greeter"]["instances"][0]["state"] == "Completed"
    assert apps["greeter"]["instances"][0]["exit_code"] == 0

    # One instance: its lines as they are. Several: each line names its instance.
    greeter = agent.api("/logs/default/greeter")
    assert greeter.status == 200
    assert greeter.text.splitlines()[:2] == ["hello from wasm", "arg[0]=greeter"]
    names = sorted(s.name for s in ticker.instances)
    wait_until(
        lambda: all(f"[{n}] tick 1" in agent.api("/logs/default/ticker").text for n in names),
        "both instances' lines",
    )
    one = agent.api(f"/logs/default/ticker?instance={names[0]}&tail=2").text.splitlines()
    assert len(one) == 2 and all(x.startswith("tick ") for x in one)
    assert agent.api("/logs/default/nothing").status == 404
    assert agent.api("/logs/default/ticker?tail=lots").status == 400

    assert agent.api("/healthz").status == 200
    assert agent.api("/readyz").status == 503  # until the agent's owner says it is ready
    agent.agent.ready = True
    assert agent.api("/readyz").status == 200


def test_duplicate_app_is_refused() -> None:
    doc = app_doc("twice", {"configMap": {"name": "m", "key": "k"}})
    try:
        desired_from_documents([doc, doc])
    except ValueError as e:
        assert "default/twice" in str(e) and "twice" in str(e)
    else:
        raise AssertionError("a duplicate WasmApp was accepted")


def _wasmlet() -> list[str]:
    script = Path(sys.executable).parent / "wasmlet"
    return [str(script)] if script.exists() else [sys.executable, "-m", "wasmlet.cli"]


class _Lines:
    """Collects a process stream's lines on a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), name="test-reader")
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def join(self) -> None:
        self._thread.join(10)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def test_wasmlet_run_serves_logs_and_stops_on_sigterm(
    oci: OciModule, guests: dict[str, Path], tmp_path: Path
) -> None:
    http_port, api_port = free_port(), free_port()
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "modules"},
            "binaryData": {"cgi.wasm": base64.b64encode(guests["cgi"].read_bytes()).decode()},
        },
        app_doc("ticker", oci("long"), replicas=2),
        app_doc(
            "web",
            {"configMap": {"name": "modules", "key": "cgi.wasm"}},
            mode="http",
            http={"port": http_port},
        ),
    ]
    manifest = tmp_path / "apps.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    proc = subprocess.Popen(
        [
            *_wasmlet(),
            "run",
            str(manifest),
            "--node-name",
            "laptop",
            "--api-port",
            str(api_port),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = _Lines(proc.stdout), _Lines(proc.stderr)
    try:
        wait_until(
            lambda: len({x.split("]")[0] for x in out.lines if "] tick 1" in x}) == 2,
            "both ticker instances' output",
            timeout=30,
        )
        assert all(x.startswith("[ticker/ticker-") for x in out.lines), out
        wait_until(lambda: request(api_port, "/readyz").status == 200, "the agent to be ready")
        # The agent is ready at once; the app once its module is loaded where it is served.
        wait_until(
            lambda: any(a["name"] == "web" and a["ready"] == 1
                        for a in json.loads(request(api_port, "/apps").text)),
            "web to be ready",
        )  # fmt: skip
        resp = request(http_port, "/from/curl", method="POST", body=b"payload")
        assert resp.status == 200 and "body=payload" in resp.text
        wait_until(lambda: any(x.startswith("[web/web-") for x in out.lines), "the web log")
        assert any("cgi: POST /from/curl" in x for x in out.lines)
        metrics = request(api_port, "/metrics").text
        assert 'wasmlet_agent_info{node="laptop"' in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        out.join()
        err.join()
    assert "stopping" in str(err)
    assert f"serves http://127.0.0.1:{http_port}/" in str(err)
    assert "Traceback" not in str(err), err


def test_wasmlet_run_refuses_a_bad_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        yaml.safe_dump(app_doc("bad", {"oci": {"reference": "r/x:1"}}, replicas="three"))
    )
    proc = subprocess.run(
        [*_wasmlet(), "run", str(manifest), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "WasmApp bad: spec.replicas" in proc.stderr
