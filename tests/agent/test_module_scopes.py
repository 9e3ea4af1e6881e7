"""Private modules stay private in the cache: naming another namespace's digest is refused,
through a real Agent and a registry that requires credentials, online and offline."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import StartAgent
from tests.agent.harness import Objects, RunningAgent, app_doc, wait_until
from wasmlet.api.placements import AppReport, Reason
from wasmlet.api.spec import parse_spec
from wasmlet_agent.apps import DesiredApp
from wasmlet_agent.lifecycle import State
from wasmlet_agent.module_scopes import Scope, ScopeIndex, allows, credentialed, record
from wasmlet_agent.standalone import desired_from_documents
from wasmlet_dev.oci import push_wasm_artifact
from wasmlet_dev.ports import free_port as closed_port
from wasmlet_dev.registry import start_registry

ONCE = {"restartPolicy": "OnFailure", "backoff": {"initialSeconds": 0.1, "maxSeconds": 0.5}}


@pytest.mark.parametrize(
    ("scope", "namespace", "expected"),
    [
        (None, "a", False),  # cached by an older agent, or not at all: fetch it yourself
        (Scope(public=True), "a", True),
        (Scope(public=False, namespaces=frozenset({"a"})), "a", True),
        (Scope(public=False, namespaces=frozenset({"a"})), "b", False),
        (Scope(), "a", False),
    ],
)
def test_allows(scope: Scope | None, namespace: str, expected: bool) -> None:
    assert allows(scope, namespace) is expected


@pytest.mark.parametrize(
    ("before", "namespace", "with_credentials", "after"),
    [
        (None, "a", True, Scope(False, frozenset({"a"}))),
        (None, "a", False, Scope(public=True)),
        (Scope(False, frozenset({"a"})), "b", True, Scope(False, frozenset({"a", "b"}))),
        (Scope(False, frozenset({"a"})), "b", False, Scope(public=True)),
        (Scope(public=True), "b", True, Scope(public=True)),
    ],
)
def test_record(before: Scope | None, namespace: str, with_credentials: bool, after: Scope) -> None:
    assert record(before, namespace, with_credentials) == after


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ({"oci": {"reference": "r.example/a:v1"}}, False),
        ({"oci": {"reference": "r.example/a:v1", "pullSecret": "pull"}}, True),
        ({"configMap": {"name": "m", "key": "k"}}, True),
        ({"http": {"url": "https://x.example/m.wasm"}, "digest": "sha256:" + "a" * 64}, False),
    ],
)
def test_credentialed(module: dict[str, Any], expected: bool) -> None:
    assert credentialed(parse_spec({"module": module}).module) is expected


def test_scope_index_survives_a_new_instance(tmp_path: Path) -> None:
    digest = "sha256:" + "b" * 64
    ScopeIndex(tmp_path).record(digest, "team-a", with_credentials=True)
    again = ScopeIndex(tmp_path)  # a restarted agent
    assert again.allows(digest, "team-a") and not again.allows(digest, "team-b")


def _app(namespace: str, name: str, module: dict[str, Any]) -> DesiredApp:
    doc = app_doc(name, module, **ONCE)
    doc["metadata"]["namespace"] = namespace
    (app,), _ = desired_from_documents([doc])
    return app


def _report(agent: RunningAgent, namespace: str, name: str, what: str, check: Any) -> AppReport:
    def poll() -> AppReport | None:
        rep = agent.reports().get((namespace, name))
        return rep if rep is not None and check(rep) else None

    return wait_until(poll, f"{namespace}/{name}: {what}", timeout=30)


def _completed(rep: AppReport) -> bool:
    return bool(rep.instances) and rep.instances[0].state is State.COMPLETED


def _refused(reason: str) -> Any:
    return lambda rep: rep.problem is not None and rep.problem[0] == reason


def test_a_private_digest_is_not_served_to_another_namespace(
    start: StartAgent, guests: dict[str, Path], tmp_path: Path
) -> None:
    registry = start_registry(tmp_path / "registry", auth="htpasswd")
    try:
        wasm = guests["hello"].read_bytes()
        digest = "sha256:" + hashlib.sha256(wasm).hexdigest()
        pushed = push_wasm_artifact(registry, "private/hello", "v1", wasm)
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "pull", "namespace": "team-a"},
            "data": {
                ".dockerconfigjson": base64.b64encode(
                    json.dumps(registry.docker_config()).encode()
                ).decode()
            },
        }
        cache = tmp_path / "cache"
        private = {"reference": pushed.pinned, "insecure": True, "pullSecret": "pull"}
        owner = _app("team-a", "mine", {"oci": private})
        # The attacks: the same manifest digest, the module digest behind a tag, and the module
        # digest behind a URL that serves nothing; none with credentials.
        attacks = [
            ("by-manifest", {"oci": {"reference": pushed.pinned, "insecure": True}},
             Reason.UNAUTHORIZED),
            ("by-digest", {"oci": {"reference": pushed.reference, "insecure": True},
                           "digest": digest}, Reason.UNAUTHORIZED),
            ("by-url", {"http": {"url": f"http://127.0.0.1:{closed_port()}/m.wasm"},
                        "digest": digest}, Reason.SOURCE_UNREACHABLE),
        ]  # fmt: skip
        agent = start(Objects([secret]), cache_dir=cache)
        agent.apply(owner)
        _report(agent, "team-a", "mine", "completed", _completed)
        agent.apply(owner, *(_app("team-b", name, m) for name, m, _ in attacks))
        for name, _, reason in attacks:
            rep = _report(agent, "team-b", name, f"refused with {reason}", _refused(reason))
            assert all(i.state is not State.COMPLETED for i in rep.instances)
        rep = agent.reports()[("team-a", "mine")]
        assert _completed(rep) and rep.digest == digest
        scope = json.loads((cache / "modules" / "scopes" / f"{digest[7:]}.json").read_text())
        assert scope == {"public": False, "namespaces": ["team-a"]}
        agent.stop()
    finally:
        registry.stop()
    # Offline (the registry is gone): the owner still runs from the cache, the other
    # namespace is still refused, from the scope kept on disk.
    agent = start(Objects([secret]), cache_dir=cache)
    agent.apply(owner, *(_app("team-b", name, m) for name, m, _ in attacks))
    _report(agent, "team-a", "mine", "completed offline", _completed)
    for name, _, _ in attacks:
        rep = _report(agent, "team-b", name, "refused offline", lambda r: r.problem is not None)
        assert all(i.state is not State.COMPLETED for i in rep.instances)


def test_a_public_module_stays_shared(
    start: StartAgent, guests: dict[str, Path], tmp_path: Path
) -> None:
    registry = start_registry(tmp_path / "registry", auth="none")
    try:
        wasm = guests["hello"].read_bytes()
        pushed = push_wasm_artifact(registry, "public/hello", "v1", wasm)
        agent = start(Objects(), cache_dir=tmp_path / "cache")
        module = {"oci": {"reference": pushed.pinned, "insecure": True}}
        agent.apply(_app("team-a", "one", module))
        _report(agent, "team-a", "one", "completed", _completed)
    finally:
        registry.stop()
    # The registry is gone: another namespace still gets the public module from the cache.
    agent.apply(_app("team-a", "one", module), _app("team-b", "two", module))
    _report(agent, "team-b", "two", "completed from the cache", _completed)
