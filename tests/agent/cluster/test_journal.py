"""The node's journal: what was written reads back, and every bad journal is refused as a
whole with the problem named (another node, another format, truncated, tampered)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from wasmlet_agent.cluster.autonomy import all_ready, is_autonomous
from wasmlet_agent.cluster.journal import (
    FORMAT,
    JournalError,
    JournalState,
    Problem,
    decode,
    encode,
    fingerprint,
    pinned,
    pruned,
)
from wasmlet_agent.cluster.journal_store import JournalStore

KEY = bytes(range(32))
NODE = "edge-1"


def placement(name: str, template: dict[str, Any], revision: str = "r1") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": f"{name}-x", "generation": 2},
        "spec": {"app": name, "node": NODE, "revision": revision, "replicas": 2,
                 "template": template},
    }  # fmt: skip


TEMPLATE = {
    "module": {"oci": {"reference": "reg/app:v1", "pullSecret": "pull"}},
    "env": [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "token", "key": "b"}}},
    ],
}


def state(**kw: Any) -> JournalState:
    base: dict[str, Any] = {
        "node": NODE,
        "placements": {("ns", "web-x"): placement("web", TEMPLATE)},
        "config_maps": {("ns", "cm"): {"data": {"a": "1"}, "binaryData": {}}},
        "secrets": {("ns", "token"): {"data": {"b": "c2VjcmV0"}}, ("ns", "pull"): None},
        "digests": {("ns", "web", "r1"): "sha256:" + "a" * 64},
        "agent_version": "0.1.0",
    }
    base.update(kw)
    return JournalState(**base)


def nonces() -> Any:
    counter = iter(range(1, 10_000))
    return lambda: next(counter).to_bytes(12, "big")


def test_round_trip_keeps_placements_objects_and_digests() -> None:
    doc, files = encode(state(), KEY, nonces())
    back = decode(doc, files, NODE, KEY, "j")
    assert back == state()
    assert fingerprint(back) == fingerprint(state())
    # The Secret's value is not in journal.json or its file in plain text.
    assert b"c2VjcmV0" not in doc and all(b"c2VjcmV0" not in f for f in files.values())


def _tamper_json(doc: bytes, change: Any) -> bytes:
    d = json.loads(doc)
    change(d)
    return json.dumps(d).encode()


def _edit_keep_checksum(doc: bytes, change: Any) -> bytes:
    """A change whose checksum is recomputed: only the field checks can catch it."""
    from wasmlet_agent.cluster.journal import _sha256, canonical

    d = json.loads(doc)
    change(d)
    body = {k: v for k, v in d.items() if k != "checksum"}
    d["checksum"] = f"sha256:{_sha256(canonical(body))}"
    return json.dumps(d).encode()


BAD: list[tuple[str, Any, Problem, str]] = [
    ("truncated", lambda doc, files: (doc[: len(doc) // 2], files), Problem.CORRUPT,
     "not valid JSON"),
    ("empty", lambda doc, files: (b"", files), Problem.CORRUPT, "not valid JSON"),
    ("not a journal", lambda doc, files: (b"[1, 2]", files), Problem.CORRUPT,
     "not a wasmlet journal"),
    ("other node", lambda doc, files: (_edit_keep_checksum(doc, lambda d: d.update(node="x")),
                                       files), Problem.OTHER_NODE, "belongs to node 'x'"),
    ("other format", lambda doc, files: (
        _edit_keep_checksum(doc, lambda d: d.update(format=FORMAT + 1, agentVersion="9.9")),
        files), Problem.OTHER_FORMAT, "written by wasmlet 9.9"),
    ("edited replicas", lambda doc, files: (
        _tamper_json(doc, lambda d: d["placements"][0]["spec"].update(replicas=9)), files),
     Problem.CHECKSUM, "checksum does not match"),
    ("secret file gone", lambda doc, files: (doc, {}), Problem.SECRET_MISSING,
     "Secret ns/token"),
    ("secret file changed", lambda doc, files: (
        doc, {n: b[:-1] + bytes([b[-1] ^ 1]) for n, b in files.items()}),
     Problem.SECRET_TAMPERED, "changed after it was written"),
    ("secret file swapped and renamed", lambda doc, files: (
        doc, {n: encode(state(secrets={("ns", "token"): {"data": {"b": "eA=="}}}), bytes(32),
                        nonces())[1].popitem()[1] for n in files}),
     Problem.SECRET_TAMPERED, "changed after it was written"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "damage", "problem", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_journals_are_refused_naming_the_problem(
    case: str, damage: Any, problem: Problem, words: str
) -> None:
    doc, files = damage(*encode(state(), KEY, nonces()))
    with pytest.raises(JournalError) as err:
        decode(doc, files, NODE, KEY, "/var/j.json")
    assert err.value.problem is problem, case
    assert words in str(err.value) and "/var/j.json" in str(err.value)


def test_another_nodes_key_cannot_open_the_secrets() -> None:
    doc, files = encode(state(), KEY, nonces())
    with pytest.raises(JournalError) as err:
        decode(doc, files, NODE, bytes(32), "j")
    assert err.value.problem is Problem.SECRET_TAMPERED
    with pytest.raises(JournalError) as err:
        decode(doc, files, NODE, None, "j")
    assert "key is missing" in str(err.value)


def test_pruned_keeps_only_what_the_templates_read() -> None:
    s = state(
        config_maps={("ns", "cm"): {"data": {}}, ("ns", "old"): {"data": {}}},
        digests={("ns", "web", "r1"): "sha256:1", ("ns", "web", "r0"): "sha256:0"},
    )
    p = pruned(s)
    assert set(p.config_maps) == {("ns", "cm")}
    assert set(p.secrets) == {("ns", "token"), ("ns", "pull")}
    assert set(p.digests) == {("ns", "web", "r1")}


def test_pinned_runs_the_last_digest_of_the_same_revision_only() -> None:
    s = state(placements={("ns", "web-x"): placement("web", TEMPLATE),
                          ("ns", "new-x"): placement("new", TEMPLATE, "r2")})  # fmt: skip
    out = pinned(s)
    assert out[("ns", "web-x")]["spec"]["template"]["module"]["digest"] == "sha256:" + "a" * 64
    assert "digest" not in out[("ns", "new-x")]["spec"]["template"]["module"]
    assert "digest" not in TEMPLATE["module"]  # the input is not changed


@pytest.mark.parametrize(
    ("from_journal", "since", "timeout", "expected"),
    [
        (True, 0.0, 5.0, True),
        (True, None, 5.0, True),
        (False, 1.0, 5.0, False),
        (False, 6.0, 5.0, True),
        (False, None, 5.0, False),  # never reached the API, no journal: runs nothing
    ],
)
def test_is_autonomous(
    from_journal: bool, since: float | None, timeout: float, expected: bool
) -> None:
    assert is_autonomous(from_journal, since, timeout) is expected


def test_all_ready_needs_every_app() -> None:
    from wasmlet.api.placements import AppReport

    rep = AppReport(("ns", "a"), "r1", desired=2, replicas=2, ready=2, updated=2)
    assert all_ready({("ns", "a"): rep}, 1)
    assert not all_ready({("ns", "a"): rep}, 2)
    rep.ready = 1
    assert not all_ready({("ns", "a"): rep}, 1)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_store_is_private_atomic_and_skips_unchanged_writes(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "journal", NODE)
    assert store.load() is None
    assert store.save(state()) is True
    assert store.save(state()) is False  # same content: no write
    assert _mode(store.dir) == 0o700 and _mode(store.secrets_dir) == 0o700
    files = [store.path, store.dir / "key", *store.secrets_dir.iterdir()]
    assert len(files) == 3 and all(_mode(f) == 0o600 for f in files)
    assert not list(store.dir.glob(".*.tmp"))
    assert JournalStore(store.dir, NODE).load() == state()
    # A changed Secret replaces its file; the old one is removed.
    changed = state(secrets={("ns", "token"): {"data": {"b": "bmV3"}}, ("ns", "pull"): None})
    assert store.save(changed) is True
    assert len(list(store.secrets_dir.iterdir())) == 1
    assert JournalStore(store.dir, NODE).load() == changed
    with pytest.raises(JournalError) as err:
        JournalStore(store.dir, "other-node").load()
    assert err.value.problem is Problem.OTHER_NODE


def test_run_and_node_keep_separate_cache_dirs() -> None:
    """`wasmlet run` on an edge node never shares the node agent's cache or journal."""
    from wasmlet_agent.main import parse_args

    run = parse_args(["run", "app.yaml"]).cache_dir
    node = parse_args(["node"]).cache_dir
    assert run != node and run.parent == node.parent
    assert not (node / "journal").is_relative_to(run)
