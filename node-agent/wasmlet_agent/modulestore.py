"""From spec.module to a ready-to-instantiate module: pull, verify, cache, compile or load.

Modules are kept in memory by digest, so every instance of every app that runs the same
module shares one compiled copy; on disk the cache keeps the bytes and the precompiled
artifact, so a restarted agent loads instead of compiling. A module fetched with a
namespace's own credentials is served from the cache only to namespaces that fetched it
themselves (`module_scopes.py`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from wasmlet.api.spec import ModuleSpec
from wasmlet_agent.cache import Cache, CachedModule
from wasmlet_agent.metrics import AgentMetrics
from wasmlet_agent.module_scopes import ScopeIndex, credentialed
from wasmlet_agent.objects import ObjectLookup
from wasmlet_agent.runtime.engine import WasmEngine
from wasmlet_agent.runtime.modules import LoadedModule, compile_artifact
from wasmlet_agent.sources import (
    DockerConfig,
    ModuleBytes,
    OciClient,
    fetch_http,
    module_from_configmap,
    parse_reference,
)
from wasmlet_agent.sources.base import InvalidSource
from wasmlet_agent.sources.digests import verify_digest

Phase = Callable[[str], None]  # told "pull", "compile" or "load" as a load moves on


@dataclass(frozen=True)
class Ready:
    """A module ready to instantiate, and what it cost to get it."""

    digest: str
    module: LoadedModule
    pulled: bool  # bytes came over the network (not from the cache)
    compiled: bool  # compiled now (not loaded precompiled)


class ModuleStore:
    def __init__(
        self,
        cache: Cache,
        engine: WasmEngine,
        lookup: ObjectLookup,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.cache = cache
        self.engine = engine
        self.lookup = lookup
        self.metrics = metrics
        self.fingerprint = engine.fingerprint
        self.scopes = ScopeIndex(cache.root / "scopes")
        self._loaded: dict[str, LoadedModule] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, digest: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(digest, threading.Lock())

    def _observe(self, namespace: str, app: str, phase: str, seconds: float) -> None:
        if self.metrics is not None:
            labels = {"namespace": namespace, "app": app, "phase": phase}
            self.metrics.cold_start.labels(**labels).observe(seconds)

    def _source(
        self, namespace: str, spec: ModuleSpec
    ) -> tuple[str | None, Callable[[], ModuleBytes]]:
        """(the module's digest if known before downloading it, how to fetch the module)."""
        known = spec.digest
        if spec.oci is None:
            return known, self._fetcher(namespace, spec)
        oci = spec.oci
        ref = parse_reference(oci.reference)
        if known is None and ref.digest is not None:
            # A reference pinned by manifest digest is immutable: a hit needs no network.
            known = self.cache.lookup_alias(ref.digest)
        if known is not None:
            return known, self._fetcher(namespace, spec)
        # A tag may have moved: read its manifest (small), which names the module's digest,
        # and download the module only if the cache does not have it.
        docker_config = None
        if oci.pull_secret:
            docker_config = self._docker_config(namespace, oci.pull_secret)
        client = OciClient(docker_config=docker_config, insecure=oci.insecure)
        resolved = client.resolve(ref)
        known = resolved.module_digest or self.cache.lookup_alias(resolved.manifest_digest)
        return known, lambda: client.fetch(resolved)

    def _fetcher(self, namespace: str, spec: ModuleSpec) -> Callable[[], ModuleBytes]:
        if spec.oci is not None:
            oci = spec.oci

            def pull() -> ModuleBytes:
                # Built only when a pull happens: the client's TLS context costs ~20 ms, which
                # a cache hit (an agent restart) should not pay.
                docker_config = None
                if oci.pull_secret:
                    docker_config = self._docker_config(namespace, oci.pull_secret)
                client = OciClient(docker_config=docker_config, insecure=oci.insecure)
                return client.pull(parse_reference(oci.reference), expected_digest=spec.digest)

            return pull
        if spec.http is not None:
            url, digest = spec.http.url, spec.digest
            assert digest is not None  # the schema requires it for http
            return lambda: fetch_http(url, digest)
        assert spec.config_map is not None
        cm = spec.config_map

        def from_configmap() -> ModuleBytes:
            obj = self.lookup.config_map(namespace, cm.name)
            if obj is None:
                raise InvalidSource(
                    f"spec.module.configMap: ConfigMap {namespace}/{cm.name} not found"
                )
            return module_from_configmap(obj, cm.key, expected_digest=spec.digest)

        return from_configmap

    def _docker_config(self, namespace: str, name: str) -> DockerConfig:
        secret = self.lookup.secret(namespace, name)
        if secret is None:
            raise InvalidSource(
                f"spec.module.oci.pullSecret: Secret {namespace}/{name} not found; create a "
                "kubernetes.io/dockerconfigjson Secret with the registry credentials"
            )
        data: dict[str, Any] = dict(secret.get("data") or {})
        raw = data.get(".dockerconfigjson")
        if raw is not None:
            return DockerConfig.parse(base64.b64decode(raw))
        plain = (secret.get("stringData") or {}).get(".dockerconfigjson")
        if plain is None:
            raise InvalidSource(
                f"spec.module.oci.pullSecret: Secret {namespace}/{name} has no "
                ".dockerconfigjson key"
            )
        return DockerConfig.parse(json.loads(plain) if isinstance(plain, str) else plain)

    def _get_scoped(
        self,
        namespace: str,
        spec: ModuleSpec,
        known: str | None,
        fetch: Callable[[], ModuleBytes],
    ) -> CachedModule:
        """The cached module if `namespace` may use it; otherwise fetched once through the
        namespace's own source and credentials, which must give the very same bytes."""
        with_credentials = credentialed(spec)
        if known is not None and not self.scopes.allows(known, namespace):
            module = fetch()  # an Unauthorized or Unreachable source refuses here
            verify_digest(module.data, known, f"module {spec.describe()}")
            cached = self.cache.get_or_fetch(known, lambda: module)
            self.scopes.record(cached.digest, namespace, with_credentials)
            return replace(cached, fetched=True)
        ran = False

        def fetch_and_note() -> ModuleBytes:
            nonlocal ran
            ran = True
            return fetch()

        cached = self.cache.get_or_fetch(known, fetch_and_note)
        if ran:
            self.scopes.record(cached.digest, namespace, with_credentials)
        return cached

    def load(self, namespace: str, app: str, spec: ModuleSpec, phase: Phase) -> Ready:
        """Blocking; raises SourceError (pull, verify) or ModuleError (compile, link)."""
        known = spec.digest
        if known is None and spec.oci is not None:
            ref = parse_reference(spec.oci.reference)
            if ref.digest is not None:
                known = self.cache.lookup_alias(ref.digest)
        if known is not None and known in self._loaded and self.scopes.allows(known, namespace):
            return Ready(known, self._loaded[known], pulled=False, compiled=False)
        phase("pull")
        t0 = time.perf_counter()
        known, fetch = self._source(namespace, spec)
        cached = self._get_scoped(namespace, spec, known, fetch)
        digest = cached.digest
        if cached.fetched:
            self._observe(namespace, app, "pull", time.perf_counter() - t0)
        with self._lock(digest):
            if digest in self._loaded:
                return Ready(digest, self._loaded[digest], cached.fetched, compiled=False)
            phase("compile")
            t1 = time.perf_counter()
            compiled = False

            def compile_(wasm: bytes) -> bytes:
                nonlocal compiled
                compiled = True
                return compile_artifact(self.engine, wasm)

            artifact = self.cache.get_or_compile(digest, self.fingerprint, compile_)
            t2 = time.perf_counter()
            module = LoadedModule.from_serialized(self.engine, artifact, name=digest[:19])
            t3 = time.perf_counter()
            if compiled:
                self._observe(namespace, app, "compile", t2 - t1)
            self._observe(namespace, app, "load", t3 - t2)
            if self.metrics is not None:
                kind = "compiled"
                (self.metrics.cache_misses if compiled else self.metrics.cache_hits).labels(
                    kind=kind
                ).inc()
                (self.metrics.cache_misses if cached.fetched else self.metrics.cache_hits).labels(
                    kind="module"
                ).inc()
                stats = self.cache.stats
                self.metrics.cache_bytes.set(stats.bytes_on_disk)
                self.metrics.cache_modules.set(stats.modules)
                self.metrics.cache_evictions.set(stats.evictions)
            self._loaded[digest] = module
            return Ready(digest, module, cached.fetched, compiled)

    def forget_unused(self, in_use: set[str]) -> None:
        """Drop compiled modules no app uses any more (the disk cache keeps them)."""
        with self._guard:
            for digest in list(self._loaded):
                if digest not in in_use:
                    del self._loaded[digest]
