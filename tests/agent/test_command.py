"""Command-mode apps through a real Agent: lifecycle, restarts, limits, scaling, rollover."""

from __future__ import annotations

import itertools
import re
import time

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import free_port, instance_threads, request, wait_until, wasm_app
from wasmlet.api.placements import AppReport
from wasmlet_agent.lifecycle import State

FAST_BACKOFF = {"initialSeconds": 0.1, "maxSeconds": 10}


def test_replicas_reach_running_and_report_ready(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    agent.apply(wasm_app("ticker", oci("long"), replicas=3))
    rep = agent.wait_report("ticker", lambda r: r.ready == 3, "3 ready instances")
    assert rep.replicas == rep.updated == rep.desired == 3
    assert rep.problem is None
    assert rep.digest is not None and rep.digest.startswith("sha256:")
    assert {s.state for s in rep.instances} == {State.RUNNING}
    assert len({s.name for s in rep.instances}) == 3
    started = [e for e in agent.events_of("ticker") if e.reason == "Started"]
    assert len(started) == 3
    # Each instance's output is its own log.
    for s in rep.instances:
        wait_until(
            lambda name=s.name: "tick 1" in agent.api(f"/logs/default/ticker?instance={name}").text,
            f"{s.name} to log",
        )


def test_scale_down_and_up(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    agent.apply(wasm_app("ticker", oci("long"), replicas=3))
    before = agent.wait_report("ticker", lambda r: r.ready == 3, "3 ready")
    agent.apply(wasm_app("ticker", oci("long"), replicas=1))
    after = agent.wait_report("ticker", lambda r: r.replicas == 1 and r.ready == 1, "1 left")
    # Scaling keeps the revision: the surviving instance was not restarted.
    survivor = after.instances[0]
    assert survivor.name in {s.name for s in before.instances}
    assert survivor.restarts == 0
    wait_until(lambda: len(instance_threads()) == 1, "stopped instances' threads to end")
    agent.apply(wasm_app("ticker", oci("long"), replicas=2))
    agent.wait_report("ticker", lambda r: r.ready == 2 and r.replicas == 2, "2 ready")


def _delays(message: str) -> list[float]:
    return [float(x) for x in re.findall(r"restarting in ([0-9.]+)s", message)]


def test_always_restarts_a_failing_guest_with_backoff(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    agent.apply(wasm_app("fails", oci("exit"), args=["3"], backoff=FAST_BACKOFF))
    seen: list[float] = []

    def restarted_three_times() -> AppReport | None:
        rep = agent.report("fails")
        assert rep is not None
        (s,) = rep.instances
        for d in _delays(s.message):
            if not seen or seen[-1] != d:
                seen.append(d)
        return rep if s.restarts >= 3 and s.state is State.BACK_OFF else None

    rep = wait_until(restarted_three_times, "3 restarts")
    (s,) = rep.instances
    assert s.exit_code == 3 and s.reason == "Error"
    assert rep.ready == 0 and rep.problem is not None and rep.problem[0] == "Error"
    # Exponential back-off: every delay seen doubles the one before (polls may skip some).
    assert len(seen) >= 2, seen
    assert seen[0] >= 0.1
    for a, b in itertools.pairwise(seen):
        assert b > a and (b / a) in (2, 4, 8, 16), seen
    warnings = [e for e in agent.events_of("fails") if e.type == "Warning"]
    assert warnings and all(e.reason == "Error" for e in warnings)
    assert "exited with code 3" in warnings[0].message
    restarts = agent.metric(
        "wasmlet_instance_restarts_total", namespace="default", app="fails", reason="Error"
    )
    assert restarts is not None and restarts >= 3
    assert "exiting with 3" in agent.api("/logs/default/fails").text


def test_restart_policies_on_exit(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    agent.apply(
        wasm_app("done", oci("exit"), args=["0"], restartPolicy="OnFailure"),
        wasm_app("retry", oci("exit"), args=["5"], restartPolicy="OnFailure", backoff=FAST_BACKOFF),
        wasm_app("never", oci("exit"), args=["7"], restartPolicy="Never", backoff=FAST_BACKOFF),
    )
    done = agent.wait_report("done", lambda r: r.instances[0].state is State.COMPLETED, "completed")
    assert done.ready == 1 and done.problem is None
    assert done.instances[0].exit_code == 0 and done.instances[0].restarts == 0
    retry = agent.wait_report("retry", lambda r: r.instances[0].restarts >= 2, "restarts")
    assert retry.instances[0].exit_code == 5
    never = agent.wait_report("never", lambda r: r.instances[0].state is State.FAILED, "failed")
    (s,) = never.instances
    assert (s.exit_code, s.reason, s.restarts) == (7, "Error", 0)
    assert never.problem == ("Error", "exited with code 7")
    # Completed and Failed instances stay as they are.
    assert agent.report("done").instances[0].restarts == 0  # type: ignore[union-attr]
    assert agent.report("never").instances[0].state is State.FAILED  # type: ignore[union-attr]


def test_traps_timeouts_and_memory_are_reported_while_other_apps_serve(
    start: StartAgent, oci: OciModule
) -> None:
    agent = start()
    port = free_port()
    agent.apply(
        wasm_app("web", oci("cgi"), mode="http", http={"port": port}),
        wasm_app("trap", oci("trap"), restartPolicy="Never"),
        wasm_app("spin", oci("loop"), restartPolicy="Never", limits={"timeoutSeconds": 1}),
        wasm_app(
            "hog",
            oci("memhog"),
            args=["64"],
            limits={"memory": "2Mi"},
            backoff=FAST_BACKOFF,
        ),
    )
    agent.wait_report("web", lambda r: r.ready == 1, "serving")
    # While a guest spins and another eats its memory, the agent keeps serving.
    for i in range(5):
        resp = request(port, f"/req/{i}")
        assert resp.status == 200 and f"path=/req/{i}" in resp.text
    trap = agent.wait_report("trap", lambda r: r.instances[0].state is State.FAILED, "failed")
    assert trap.instances[0].reason == "Trapped"
    assert "unreachable" in trap.instances[0].message
    spin = agent.wait_report("spin", lambda r: r.instances[0].state is State.FAILED, "failed")
    assert spin.instances[0].reason == "TimedOut"
    assert "timed out after 1" in spin.instances[0].message
    hog = agent.wait_report(
        "hog",
        lambda r: r.instances[0].restarts >= 1 and r.instances[0].reason == "OutOfMemory",
        "out of memory, restarted",
    )
    assert hog.instances[0].memory_bytes > 1024 * 1024  # it got close to its 2Mi limit
    reasons = {(e.key[1], e.type, e.reason) for e in agent.events}
    assert {
        ("trap", "Warning", "Trapped"),
        ("spin", "Warning", "TimedOut"),
        ("hog", "Warning", "OutOfMemory"),
    } <= reasons
    assert request(port, "/after").status == 200
    assert agent.api("/healthz").status == 200
    exits = agent.metric(
        "wasmlet_instance_exits_total", namespace="default", app="hog", reason="OutOfMemory"
    )
    assert exits is not None and exits >= 1


def test_rollover_never_drops_below_ready_count(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    v1 = wasm_app("ticker", oci("long"), replicas=3, env=[{"name": "V", "value": "1"}])
    v2 = wasm_app("ticker", oci("long"), replicas=3, env=[{"name": "V", "value": "2"}])
    assert v1.revision != v2.revision
    agent.apply(v1)
    agent.wait_report("ticker", lambda r: r.ready == 3, "3 ready")
    agent.apply(v2)
    lowest = 3
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, f"no rollover in 30 s: {agent.report('ticker')}"
        rep = agent.report("ticker")
        assert rep is not None
        lowest = min(lowest, rep.ready)
        revisions = {s.revision for s in rep.instances}
        if revisions == {v2.revision} and rep.ready == 3 and rep.replicas == 3:
            break
        assert rep.replicas <= 6
        time.sleep(0.01)
    assert lowest >= 3, f"ready dropped to {lowest} during the rollover"
    assert rep.updated == 3 and rep.revision == v2.revision
    wait_until(lambda: len(instance_threads()) == 3, "old instances' threads to end")


def test_rolling_back_reuses_the_old_revisions_instances(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    good = wasm_app("ticker", oci("long"), replicas=2)
    bad = wasm_app("ticker", {"configMap": {"name": "absent", "key": "m.wasm"}}, replicas=2)
    agent.apply(good)
    before = agent.wait_report("ticker", lambda r: r.ready == 2, "2 ready")
    agent.apply(bad)
    # The new revision cannot start, so the old one keeps serving.
    stuck = agent.wait_report(
        "ticker", lambda r: r.problem is not None and r.replicas == 4, "new revision failing"
    )
    assert stuck.ready == 2 and stuck.updated == 0
    agent.apply(good)
    after = agent.wait_report(
        "ticker", lambda r: r.replicas == 2 and r.ready == 2 and r.problem is None, "rolled back"
    )
    assert {(s.name, s.started_at) for s in after.instances} == {
        (s.name, s.started_at) for s in before.instances
    }
    started = [e for e in agent.events_of("ticker") if e.reason == "Started"]
    assert len(started) == 2
