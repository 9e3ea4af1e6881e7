"""Who may use a cached module: a private module is served from cache only to namespaces that
fetched it themselves, so naming another tenant's digest does not skip their credentials.

A module fetched anonymously (a public registry, an HTTP URL) is public: any namespace may
use the cached copy. A module fetched with credentials (an OCI `pullSecret`) or out of a
namespace's own ConfigMap belongs to that namespace; another namespace must fetch it through
its own source and credentials once (the bytes must have the same digest), after which it is
theirs too. The scope is kept on disk beside the cache, one small JSON file per digest,

    <cache root>/scopes/<hex>.json      {"public": false, "namespaces": ["team-a"]}

so an agent restarting from its cache with no network still honours it. A module in the
cache without a scope file (an older agent wrote it) is treated as private to nobody: each
namespace fetches it once more.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from wasmlet.api.spec import ModuleSpec
from wasmlet_agent.sources.digests import hex_of


@dataclass(frozen=True)
class Scope:
    """Who fetched a module: anyone (public) or only these namespaces."""

    public: bool = False
    namespaces: frozenset[str] = frozenset()


def credentialed(spec: ModuleSpec) -> bool:
    """True when fetching `spec` uses something of the namespace's own (a pull secret, a
    ConfigMap): the fetched bytes then belong to that namespace, not to everyone."""
    if spec.config_map is not None:
        return True
    return spec.oci is not None and bool(spec.oci.pull_secret)


def allows(scope: Scope | None, namespace: str) -> bool:
    """May `namespace` use the cached module without fetching it itself?"""
    return scope is not None and (scope.public or namespace in scope.namespaces)


def record(scope: Scope | None, namespace: str, with_credentials: bool) -> Scope:
    """The scope after `namespace` fetched the module (with or without credentials)."""
    old = scope or Scope()
    if not with_credentials:
        return Scope(public=True)  # an anonymous fetch proves anyone can have it
    if old.public:
        return old
    return Scope(public=False, namespaces=old.namespaces | {namespace})


class ScopeIndex:
    """The on-disk scope of each cached module (the module's digest names the file)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._mu = threading.Lock()

    def _path(self, digest: str) -> Path:
        return self.root / f"{hex_of(digest)}.json"

    def get(self, digest: str) -> Scope | None:
        try:
            raw = json.loads(self._path(digest).read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(raw, dict):
            return None
        names = raw.get("namespaces") or []
        return Scope(raw.get("public") is True, frozenset(str(n) for n in names))

    def allows(self, digest: str, namespace: str) -> bool:
        return allows(self.get(digest), namespace)

    def record(self, digest: str, namespace: str, with_credentials: bool) -> Scope:
        with self._mu:
            new = record(self.get(digest), namespace, with_credentials)
            path = self._path(digest)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            body = {"public": new.public, "namespaces": sorted(new.namespaces)}
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(body, f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)  # a reader sees the old scope or the new one, never half
            return new
