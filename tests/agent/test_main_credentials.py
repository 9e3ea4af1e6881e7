"""`wasmlet-agent node` with no identity to reach the API server names what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmlet_agent.main import credentials_problem, main


def test_a_kubeconfig_that_exists_is_enough(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    kc.write_text("{}")
    assert credentials_problem(str(kc), {}, tmp_path / "none") is None


def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    msg = credentials_problem(str(tmp_path / "kc"), {}, tmp_path / "none")
    assert msg == f"--kubeconfig (or KUBECONFIG) {tmp_path / 'kc'}: no such file"


def test_outside_a_pod_without_kubeconfig(tmp_path: Path) -> None:
    msg = credentials_problem(None, {}, tmp_path / "token")
    assert msg is not None and "KUBERNETES_SERVICE_HOST is unset" in msg


def test_a_pod_without_its_token(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    msg = credentials_problem(None, env, tmp_path / "token")
    assert msg is not None
    assert str(tmp_path / "token") in msg and "automountServiceAccountToken: true" in msg
    (tmp_path / "token").write_text("t")
    assert credentials_problem(None, env, tmp_path / "token") is None


def test_the_agent_stops_with_the_message_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setattr("wasmlet_agent.main.IN_CLUSTER_TOKEN", tmp_path / "token")
    rc = main(["node", "--cache-dir", str(tmp_path / "c"), "--log-dir", str(tmp_path / "l")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot start: no ServiceAccount token at" in err
