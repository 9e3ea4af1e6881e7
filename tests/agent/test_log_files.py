"""Guest output through a real Agent: CRI files in the kubelet's layout (command instances and
an HTTP revision's stderr), and the agent API's since, tail, timestamps and follow."""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path

from tests.agent.conftest import OciModule, StartAgent
from tests.agent.harness import NS, free_port, request, wait_until, wasm_app
from wasmlet.api.logs import format_timestamp, parse_timestamp, parse_wire_line


def cri(path: Path) -> list[list[str]]:
    return [line.split(" ", 3) for line in path.read_text().splitlines()]


def test_files_in_the_kubelet_layout_for_command_and_http(
    start: StartAgent, oci: OciModule, tmp_path: Path
) -> None:
    pods = tmp_path / "pods"
    agent = start(log_dir=pods)
    port = free_port()
    greeter = wasm_app("greeter", oci("hello"), args=["x"], restartPolicy="Never")
    web = wasm_app("web", oci("cgi"), mode="http", http={"port": port})
    agent.apply(greeter, web)
    rep = agent.wait_report("greeter", lambda r: r.instances[0].state == "Completed", "done")
    agent.wait_report("web", lambda r: r.ready == 1, "serving")
    home = pods / f"{NS}_greeter_{greeter.revision}"
    log = home / rep.instances[0].name / "0.log"
    wait_until(log.exists, f"{log}")
    lines = cri(log)
    assert [x[1:] for x in lines[:2]] == [["stdout", "F", "hello from wasm"],
                                          ["stdout", "F", "arg[0]=greeter"]]  # fmt: skip
    stamp = parse_timestamp(lines[0][0])
    assert abs(stamp / 1e9 - time.time()) < 60 and lines[0][0] == format_timestamp(stamp)
    # The ring serves the same times the file has.
    served = agent.api("/logs/default/greeter?timestamps=true&tail=1").text.split(" ", 1)[0]
    assert served == lines[-1][0]
    assert os.stat(log).st_mode & 0o777 == 0o600 and os.stat(home).st_mode & 0o777 == 0o700

    assert request(port, "/garbage").status == 502  # the cgi guest logs to stderr
    http_log = pods / f"{NS}_web_{web.revision}" / f"web-{web.revision[:6]}-http" / "0.log"
    wait_until(lambda: http_log.exists() and "cgi: GET /garbage" in http_log.read_text(), "file")
    assert any(x[1:3] == ["stderr", "F"] and "GET /garbage" in x[3] for x in cri(http_log))

    # Gone from the node: its directory is removed once the grace is over.
    agent.apply(web)
    agent.agent.apps.services.log_dirs.gc_grace = 0.0
    assert agent.agent.apps.collect_logs() == [home.name]
    assert not home.exists() and http_log.exists()


def test_api_since_tail_timestamps_and_follow(start: StartAgent, oci: OciModule) -> None:
    agent = start()
    agent.apply(wasm_app("ticker", oci("long"), replicas=2))
    rep = agent.wait_report("ticker", lambda r: r.ready == 2, "running")
    names = sorted(s.name for s in rep.instances)
    wait_until(lambda: agent.api("/logs/default/ticker").text.count("tick 5") == 2, "ticks")

    # prefix + timestamps: what `wasmlet logs` asks for, parsed back.
    text = agent.api("/logs/default/ticker?tail=3&prefix=true&timestamps=true").text
    wire = [parse_wire_line(x) for x in text.splitlines()]
    assert all(w is not None for w in wire) and len(wire) == 6  # 3 per instance
    assert {w.instance for w in wire if w} == set(names)
    times = [w.time_ns for w in wire if w]
    assert times == sorted(times)  # merged by time across instances

    # since: seconds before now, or an RFC 3339 time; older lines are left out.
    time.sleep(0.5)
    recent = agent.api("/logs/default/ticker?since=0.3&tail=-1&timestamps=true").text
    cutoff = time.time_ns() - int(0.3e9) - int(0.2e9)
    stamps = [parse_timestamp(x.split("] ", 1)[1].split(" ", 1)[0]) for x in recent.splitlines()]
    assert stamps and all(s >= cutoff for s in stamps) and len(stamps) <= 12
    later = format_timestamp(time.time_ns() + 10**12)
    assert agent.api(f"/logs/default/ticker?since={later}").text == ""
    bad = agent.api("/logs/default/ticker?since=yesterday")
    assert bad.status == 400 and "since='yesterday'" in bad.text

    # follow: the lines written after the request, as a stream, until the client leaves.
    conn = http.client.HTTPConnection("127.0.0.1", agent.agent.api_port, timeout=10)
    conn.request("GET", f"/logs/default/ticker?follow=true&tail=0&instance={names[0]}")
    resp = conn.getresponse()
    assert resp.status == 200 and "bytes=" in resp.headers["X-Wasmlet-Follow-Limit"]
    first = resp.readline().decode()
    assert first.startswith("tick ")  # a line printed after the stream began
    numbers = [int(first.split()[1])] + [int(resp.readline().split()[1]) for _ in range(3)]
    assert numbers == list(range(numbers[0], numbers[0] + 4))
    conn.close()
