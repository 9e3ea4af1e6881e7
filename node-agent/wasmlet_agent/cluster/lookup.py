"""ConfigMaps and Secrets as an instance's start asks for them (from `object_cache.py`, which
reads each once and then watches it), kept for the node's journal so they can be served
again while the API server cannot be reached."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from wasmlet_agent.objects import ObjectLookup


class JournalLookup:
    """The API lookup, with every answer kept for the journal.

    While the agent runs from its journal (`offline()` is true) the answers come from what was
    kept and the API server is not asked; when the API server cannot be reached, a kept
    answer stands in. An object never read before cannot be served offline: the instance
    backs off and retries (the error says so) rather than run without it.
    """

    def __init__(self, inner: ObjectLookup, offline: Callable[[], bool]) -> None:
        self.inner, self.offline = inner, offline
        self.config_maps: dict[tuple[str, str], Mapping[str, Any] | None] = {}
        self.secrets: dict[tuple[str, str], Mapping[str, Any] | None] = {}
        self._lock = threading.Lock()
        self.on_change: Callable[[], None] = lambda: None

    def restore(
        self,
        config_maps: Mapping[tuple[str, str], Mapping[str, Any] | None],
        secrets: Mapping[tuple[str, str], Mapping[str, Any] | None],
    ) -> None:
        with self._lock:
            self.config_maps, self.secrets = dict(config_maps), dict(secrets)

    def snapshot(
        self,
    ) -> tuple[dict[tuple[str, str], Mapping[str, Any] | None], dict[tuple[str, str], Any]]:
        with self._lock:
            return dict(self.config_maps), dict(self.secrets)

    def _read(
        self,
        kept: dict[tuple[str, str], Mapping[str, Any] | None],
        kind: str,
        read: Callable[[str, str], Mapping[str, Any] | None],
        namespace: str,
        name: str,
    ) -> Mapping[str, Any] | None:
        key = (namespace, name)
        if not self.offline():
            try:
                obj = read(namespace, name)
            except ApiException as e:
                if e.status is not None and e.status < 500:
                    raise  # the API server answered: its answer stands
                obj = self._kept(kept, kind, key, e)
            except Exception as e:  # unreachable: a kept answer stands in
                obj = self._kept(kept, kind, key, e)
            else:
                with self._lock:
                    changed = key not in kept or kept[key] != obj
                    kept[key] = obj
                if changed:
                    self.on_change()
            return obj
        return self._kept(kept, kind, key, None)

    def _kept(
        self,
        kept: dict[tuple[str, str], Mapping[str, Any] | None],
        kind: str,
        key: tuple[str, str],
        cause: Exception | None,
    ) -> Mapping[str, Any] | None:
        with self._lock:
            if key in kept:
                return kept[key]
        why = f": {cause}" if cause is not None else ""
        raise LookupError(
            f"{kind} {key[0]}/{key[1]}: the API server cannot be reached{why} and the node's "
            "journal does not hold it; retrying"
        )

    def config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._read(self.config_maps, "ConfigMap", self.inner.config_map, namespace, name)

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._read(self.secrets, "Secret", self.inner.secret, namespace, name)
