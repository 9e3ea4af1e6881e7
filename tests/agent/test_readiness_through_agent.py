"""spec.http.readinessCheck through a real Agent: the ready flag follows what the guest answers.

The `health` guest answers /health/NAME with the status written in /probe/NAME, a hostPath
the test controls, so one revision can pass, fail, trap and hang its check in turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import NS, RunningAgent, free_port, request, wait_until, wasm_app
from wasmlet.api.placements import AppReport, InstanceState
from wasmlet_agent.apps import DesiredApp

FAILED = "ReadinessCheckFailed"


def health_app(
    oci: OciModule, probe: Path, port: int, check: dict[str, Any], greeting: str, replicas: int = 1
) -> DesiredApp:
    return wasm_app(
        "web", oci("health"), mode="http", http={"port": port, "readinessCheck": check},
        replicas=replicas, env=[{"name": "GREETING", "value": greeting}],
        volumes=[{"name": "probe", "hostPath": {"path": str(probe)}}],
        volumeMounts=[{"name": "probe", "mountPath": "/probe"}],
    )  # fmt: skip


def not_ready_because(rep: AppReport, text: str) -> bool:
    return (
        rep.ready == 0
        and rep.problem is not None
        and rep.problem[0] == FAILED
        and text in rep.problem[1]
    )


def checks(agent: RunningAgent, result: str) -> float:
    n = agent.metric("wasmlet_readiness_checks_total", namespace=NS, app="web", result=result)
    return n or 0.0


def test_ready_follows_the_check_and_serving_goes_on(
    start: StartAgent, oci: OciModule, tmp_path: Path
) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    status = probe / "web"
    status.write_text("500")
    agent = start(allowed_host_path_prefixes=(str(tmp_path),))
    port = free_port()
    check = {"path": "/health/web", "periodSeconds": 1, "failureThreshold": 2}
    agent.apply(health_app(oci, probe, port, check, "one", replicas=2))

    # Loaded and serving, but the check answers 500: Running, not ready, and why.
    rep = agent.wait_report(
        "web", lambda r: not_ready_because(r, "GET /health/web answered 500"), "check fails",
        timeout=60,
    )  # fmt: skip
    assert len(rep.instances) == 2
    assert all(s.state is InstanceState.RUNNING and not s.ready for s in rep.instances)
    assert rep.updated == 0
    # Readiness takes the node out of the endpoints; it does not stop serving here.
    resp = request(port, "/hi")
    assert resp.status == 200 and "greeting=one" in resp.text
    assert checks(agent, "failed") >= 1 and checks(agent, "successful") == 0
    # Checks are not user traffic: the one request is all wasmlet_http_requests counts.
    requests = agent.metric("wasmlet_http_requests_total", namespace=NS, app="web", code="200")
    assert requests == 1
    assert agent.metric("wasmlet_http_requests_total", namespace=NS, app="web", code="500") is None

    status.write_text("200")
    agent.wait_report("web", lambda r: r.ready == 2 and r.updated == 2 and r.problem is None,
                      "ready once the check passes")  # fmt: skip

    # A trapping check: the agent answers 502 for the guest, and says why.
    status.write_text("trap")
    rep = agent.wait_report("web", lambda r: not_ready_because(r, "answered 502"), "trap fails")
    assert "Trapped" in rep.problem[1] if rep.problem else False
    # A check that outlives timeoutSeconds fails too, and says so.
    status.write_text("hang")
    agent.wait_report(
        "web", lambda r: not_ready_because(r, "no answer within timeoutSeconds (1 s)"),
        "hanging check fails", timeout=30,
    )  # fmt: skip
    status.write_text("204")
    rep = agent.wait_report("web", lambda r: r.ready == 2 and r.problem is None, "ready again")
    # Not ready is not a failure of the instances: nothing was restarted or replaced.
    assert [s.restarts for s in rep.instances] == [0, 0]
    assert {s.name for s in rep.instances} == {"web-" + rep.revision[:6] + f"-http-{i}"
                                               for i in range(2)}  # fmt: skip


def test_a_new_revision_takes_over_only_once_its_check_passes(
    start: StartAgent, oci: OciModule, tmp_path: Path
) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "v1").write_text("200")
    agent = start(allowed_host_path_prefixes=(str(tmp_path),))
    port = free_port()
    v1 = health_app(oci, probe, port, {"path": "/health/v1", "periodSeconds": 1}, "one")
    agent.apply(v1)
    agent.wait_report("web", lambda r: r.ready == 1 and r.updated == 1, "v1 ready", timeout=60)
    assert "greeting=one" in request(port, "/").text

    # v2's check finds no status file (503): v2 loads and runs, but is not ready.
    v2 = health_app(oci, probe, port, {"path": "/health/v2", "periodSeconds": 1}, "two")
    agent.apply(v2)
    rep = agent.wait_report(
        "web", lambda r: r.problem is not None and r.problem[0] == FAILED, "v2 check fails"
    )
    assert rep.revision == v2.revision and rep.updated == 0
    assert rep.ready == 1  # v1, still here
    states = {(s.revision, s.state, s.ready) for s in rep.instances}
    assert states == {
        (v1.revision, InstanceState.RUNNING, True),
        (v2.revision, InstanceState.RUNNING, False),
    }
    # The old revision keeps every request until the new one is ready.
    for _ in range(5):
        assert "greeting=one" in request(port, "/").text
    assert len(agent.agent.apps.revisions((NS, "web"))) == 2

    (probe / "v2").write_text("200")
    agent.wait_report(
        "web",
        lambda r: r.updated == 1 and r.replicas == 1 and r.problem is None,
        "v2 ready and v1 removed",
    )
    wait_until(lambda: "greeting=two" in request(port, "/").text, "v2 serves")
    assert [r.revision for r in agent.agent.apps.revisions((NS, "web"))] == [v2.revision]
