"""The node's journal of what it was told to run, encoded and checked without any I/O, so an
agent that cannot reach the API server can restart its apps from disk, and a journal that is
not exactly what this node wrote is refused as a whole (never a half-run set).

On disk (written by `journal_store.py`, all under the agent's private 0700 directory):

    journal/
      key                  32 random bytes, 0600: this node's key for the Secret files
      journal.json         0600: format, node, placements, ConfigMaps, Secret file names,
                           module digests, and a sha256 checksum of all of it
      secrets/<sha256>     0600: one Secret's data, AES-256-GCM sealed with `key`, the
                           node/namespace/name as associated data; named by the sha256 of
                           the file itself, so a changed file no longer matches its name

journal.json names each Secret file by content, so the store writes new Secret files first,
then journal.json by rename, then removes files nothing names: a crash at any point leaves a
journal whose every Secret file exists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wasmlet.api.spec import SpecError, WasmAppSpec, parse_spec

FORMAT = 1
NONCE_BYTES = 12
KEY_BYTES = 32

ObjectKey = tuple[str, str]  # (namespace, name)
PlacementKey = tuple[str, str]  # (namespace, placement name)
DigestKey = tuple[str, str, str]  # (namespace, app, revision)


class Problem(StrEnum):
    """Why a journal was refused (the `problem` label of wasmlet_agent_journal_rejected_total)."""

    CORRUPT = "Corrupt"  # not the JSON document the agent writes: truncated, overwritten
    CHECKSUM = "ChecksumMismatch"  # parses, but not what was written
    OTHER_FORMAT = "OtherFormat"  # written by a wasmlet with another journal format
    OTHER_NODE = "OtherNode"  # written by the agent of another node
    SECRET_MISSING = "SecretMissing"  # a Secret file it names is gone
    SECRET_TAMPERED = "SecretTampered"  # a Secret file changed, or this node's key cannot open it


class JournalError(ValueError):
    """A journal this agent must not run from; the message names the file and what is wrong."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class JournalState:
    """What the node was told to run, and the objects its apps read, as last confirmed."""

    node: str
    placements: Mapping[PlacementKey, Mapping[str, Any]] = field(default_factory=dict)
    config_maps: Mapping[ObjectKey, Mapping[str, Any] | None] = field(default_factory=dict)
    secrets: Mapping[ObjectKey, Mapping[str, Any] | None] = field(default_factory=dict)
    digests: Mapping[DigestKey, str] = field(default_factory=dict)
    agent_version: str = ""


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _aad(node: str, key: ObjectKey) -> bytes:
    return f"{node}/{key[0]}/{key[1]}".encode()


def kept_placement(p: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a placement the agent runs from (not its status, not managedFields)."""
    meta = p.get("metadata") or {}
    kept = ("namespace", "name", "uid", "generation", "ownerReferences", "deletionTimestamp")
    return {"metadata": {k: meta[k] for k in kept if k in meta}, "spec": dict(p.get("spec") or {})}


def references(spec: WasmAppSpec) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) an app's template reads: env valueFrom, volumes,
    module.configMap and the OCI pull secret."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    module = spec.module
    if module.config_map is not None:
        config_maps.add(module.config_map.name)
    if module.oci is not None and module.oci.pull_secret:
        secrets.add(module.oci.pull_secret)
    for env in spec.env:
        src = env.value_from
        if src is not None and src.config_map_key_ref is not None:
            config_maps.add(src.config_map_key_ref.name)
        if src is not None and src.secret_key_ref is not None:
            secrets.add(src.secret_key_ref.name)
    for vol in spec.volumes:
        if vol.config_map is not None:
            config_maps.add(vol.config_map.name)
        if vol.secret is not None:
            secrets.add(vol.secret.secret_name)
    return config_maps, secrets


def referenced(
    placements: Iterable[Mapping[str, Any]],
) -> tuple[set[ObjectKey], set[ObjectKey]]:
    """Every (namespace, name) of a ConfigMap and of a Secret the placements' templates read."""
    cms: set[ObjectKey] = set()
    secrets: set[ObjectKey] = set()
    for p in placements:
        ns = str((p.get("metadata") or {}).get("namespace"))
        try:
            spec = parse_spec((p.get("spec") or {}).get("template") or {})
        except SpecError:
            continue
        names_cm, names_secret = references(spec)
        cms |= {(ns, n) for n in names_cm}
        secrets |= {(ns, n) for n in names_secret}
    return cms, secrets


def pruned(state: JournalState) -> JournalState:
    """Only the objects and digests the placements still use (nothing accumulates)."""
    cms, secrets = referenced(state.placements.values())
    revisions = {
        (ns, str(p["spec"].get("app")), str(p["spec"].get("revision")))
        for (ns, _), p in state.placements.items()
    }
    return JournalState(
        node=state.node,
        placements=state.placements,
        config_maps={k: v for k, v in state.config_maps.items() if k in cms},
        secrets={k: v for k, v in state.secrets.items() if k in secrets},
        digests={k: v for k, v in state.digests.items() if k in revisions},
        agent_version=state.agent_version,
    )


def fingerprint(state: JournalState) -> str:
    """Same value for the same content: the store skips a write that would change nothing."""
    return _sha256(canonical(_plain(state)))


def _plain(state: JournalState) -> dict[str, Any]:
    return {
        "node": state.node,
        "placements": [kept_placement(p) for _, p in sorted(state.placements.items())],
        "configMaps": [
            {"namespace": k[0], "name": k[1], "object": v}
            for k, v in sorted(state.config_maps.items())
        ],
        "secrets": [
            {"namespace": k[0], "name": k[1], "object": v} for k, v in sorted(state.secrets.items())
        ],
        "digests": [
            {"namespace": k[0], "app": k[1], "revision": k[2], "digest": v}
            for k, v in sorted(state.digests.items())
        ],
    }


def encode(
    state: JournalState, key: bytes, nonce: Callable[[], bytes]
) -> tuple[bytes, dict[str, bytes]]:
    """(journal.json, Secret files by name). `nonce()` gives 12 fresh random bytes per file."""
    plain = _plain(state)
    files: dict[str, bytes] = {}
    secrets = []
    for item in plain["secrets"]:
        okey = (item["namespace"], item["name"])
        name = None
        if item["object"] is not None:
            n = nonce()
            sealed = n + AESGCM(key).encrypt(n, canonical(item["object"]), _aad(state.node, okey))
            name = _sha256(sealed)
            files[name] = sealed
        secrets.append({"namespace": okey[0], "name": okey[1], "file": name})
    body = {
        "format": FORMAT,
        "agentVersion": state.agent_version,
        **plain,
        "secrets": secrets,
    }
    doc = {**body, "checksum": f"sha256:{_sha256(canonical(body))}"}
    return json.dumps(doc, sort_keys=True, indent=1).encode(), files


def decode(
    data: bytes, secret_files: Mapping[str, bytes], node: str, key: bytes | None, where: str
) -> JournalState:
    """The state in a journal, or JournalError naming `where` and the problem."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise JournalError(
            Problem.CORRUPT, f"journal {where} is not valid JSON (truncated?): {e}"
        ) from None
    if not isinstance(doc, dict) or "format" not in doc:
        raise JournalError(Problem.CORRUPT, f"journal {where} is not a wasmlet journal")
    if doc["format"] != FORMAT:
        raise JournalError(
            Problem.OTHER_FORMAT,
            f"journal {where} has format {doc['format']!r} (written by wasmlet "
            f"{doc.get('agentVersion') or 'unknown'}); this agent reads format {FORMAT}",
        )
    if doc.get("node") != node:
        raise JournalError(
            Problem.OTHER_NODE,
            f"journal {where} belongs to node {doc.get('node')!r}, not {node!r}",
        )
    body = {k: v for k, v in doc.items() if k != "checksum"}
    if doc.get("checksum") != f"sha256:{_sha256(canonical(body))}":
        raise JournalError(
            Problem.CHECKSUM, f"journal {where}: checksum does not match its content"
        )
    try:
        placements = {
            (str(p["metadata"]["namespace"]), str(p["metadata"]["name"])): p
            for p in doc["placements"]
        }
        config_maps = {(c["namespace"], c["name"]): c["object"] for c in doc["configMaps"]}
        digests = {(d["namespace"], d["app"], d["revision"]): d["digest"] for d in doc["digests"]}
        refs = [((s["namespace"], s["name"]), s["file"]) for s in doc["secrets"]]
    except (KeyError, TypeError) as e:
        raise JournalError(Problem.CORRUPT, f"journal {where}: missing field {e}") from None
    secrets: dict[ObjectKey, Mapping[str, Any] | None] = {}
    for okey, name in refs:
        secrets[okey] = None if name is None else _open(secret_files, name, okey, node, key, where)
    return JournalState(node, placements, config_maps, secrets, digests,
                        str(doc.get("agentVersion") or ""))  # fmt: skip


def _open(
    files: Mapping[str, bytes],
    name: str,
    okey: ObjectKey,
    node: str,
    key: bytes | None,
    where: str,
) -> Mapping[str, Any]:
    label = f"Secret {okey[0]}/{okey[1]} in journal {where} (file secrets/{name})"
    sealed = files.get(name)
    if sealed is None:
        raise JournalError(Problem.SECRET_MISSING, f"{label} is missing")
    if _sha256(sealed) != name:
        raise JournalError(Problem.SECRET_TAMPERED, f"{label} was changed after it was written")
    if key is None:
        raise JournalError(Problem.SECRET_TAMPERED, f"{label}: this node's journal key is missing")
    try:
        plain = AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(node, okey))
        obj = json.loads(plain)
    except (InvalidTag, ValueError) as e:
        raise JournalError(
            Problem.SECRET_TAMPERED, f"{label} cannot be opened with this node's key: {e!r}"
        ) from None
    if not isinstance(obj, dict):
        raise JournalError(Problem.SECRET_TAMPERED, f"{label} is not a Secret's data")
    return obj


def pinned(state: JournalState) -> dict[PlacementKey, dict[str, Any]]:
    """The placements to run from the journal, each OCI module pinned to the digest this node
    last ran for that revision: a tag resolves with no registry, and the cache serves it."""
    out: dict[PlacementKey, dict[str, Any]] = {}
    for key, p in state.placements.items():
        spec = dict(p.get("spec") or {})
        template = dict(spec.get("template") or {})
        module = dict(template.get("module") or {})
        digest = state.digests.get((key[0], str(spec.get("app")), str(spec.get("revision"))))
        if digest and "oci" in module and not module.get("digest"):
            template["module"] = {**module, "digest": digest}
            spec["template"] = template
        out[key] = {**p, "spec": spec}
    return out
