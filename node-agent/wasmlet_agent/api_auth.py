"""Who may read the agent API: request path -> authorization attributes, and a decision cache.

The kubelet's model: the bearer token is reviewed (TokenReview), then the user is checked
(SubjectAccessReview) against attributes derived from the path. Both calls are I/O and live in
`wasmlet_agent.cluster.api_guard`; this module only decides, so it is table-tested.

    /healthz, /readyz       open (probes)
    /metrics                nonResourceURL /metrics, get        (like the kubelet's)
    /apps                   get wasmnodes/proxy, name=<node>    (like the kubelet's /pods)
    /logs/NS/APP            get wasmapps/log in NS, name=APP    (like pods/log)
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from wasmlet.api.constants import GROUP

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
ALLOW_TTL = 30.0  # seconds an allow is reused without asking again
DENY_TTL = 10.0  # seconds a deny (or an unknown token) is reused
OFFLINE_REUSE = 300.0  # while the API server is unreachable, decisions this recent still hold
CACHE_SIZE = 4096  # decisions kept (least recently used dropped first)

# Bounds on what one request can make the agent send.
MAX_TAIL_LINES = 10_000
MAX_LOG_BYTES = 4 * 1024 * 1024
MAX_APPS = 2_000
# A followed log stream ends after this long or this much (the client may ask again).
MAX_FOLLOW_SECONDS = 3600.0
MAX_FOLLOW_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Attributes:
    """A SubjectAccessReview's attributes: a resource (group, resource, subresource, namespace,
    name) or a non-resource path."""

    verb: str = "get"
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # non-resource URL

    def describe(self) -> str:
        if self.path:
            return f"{self.verb} {self.path}"
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {res}.{GROUP} {self.name!r}{where}"


class Verdict(enum.StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"  # authenticated, not authorized: 403
    UNAUTHENTICATED = "Unauthenticated"  # no valid token: 401


def attributes_for(path: str, node: str) -> Attributes | None:
    """What a request for `path` must be allowed; None when the path is open to anyone.

    Unknown paths need the broadest node permission (`wasmnodes/proxy`), so a route added
    later is never open by accident."""
    if path in OPEN_PATHS:
        return None
    if path == "/metrics":
        return Attributes(path="/metrics")
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "logs" and parts[2] and parts[3]:
        return Attributes(resource="wasmapps", subresource="log", namespace=parts[2], name=parts[3])
    return Attributes(resource="wasmnodes", subresource="proxy", name=node)


def token_key(token: str) -> str:
    """The cache never holds a token itself, only its digest."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    user: str
    at: float  # monotonic time it was made


class Lookup(enum.StrEnum):
    FRESH = "Fresh"  # within its TTL: use it
    STALE = "Stale"  # expired: ask the API server; reuse only if it cannot answer
    MISSING = "Missing"


class DecisionCache:
    """Recent decisions per (token digest, attributes), bounded in size.

    An allow is fresh for `allow_ttl`, a deny for `deny_ttl`; when the API server cannot be
    reached, `offline()` returns a decision no older than `offline_reuse`, else None (refuse).
    """

    def __init__(
        self,
        allow_ttl: float = ALLOW_TTL,
        deny_ttl: float = DENY_TTL,
        offline_reuse: float = OFFLINE_REUSE,
        size: int = CACHE_SIZE,
    ) -> None:
        self.allow_ttl, self.deny_ttl, self.offline_reuse = allow_ttl, deny_ttl, offline_reuse
        self.size = size
        self._items: OrderedDict[tuple[str, Attributes], Decision] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, token: str, attrs: Attributes, now: float) -> tuple[Lookup, Decision | None]:
        d = self._items.get((token_key(token), attrs))
        if d is None:
            return Lookup.MISSING, None
        ttl = self.allow_ttl if d.verdict is Verdict.ALLOW else self.deny_ttl
        return (Lookup.FRESH if now - d.at < ttl else Lookup.STALE), d

    def offline(self, token: str, attrs: Attributes, now: float) -> Decision | None:
        """The decision to reuse while the API server cannot answer, if it is recent enough."""
        d = self._items.get((token_key(token), attrs))
        return d if d is not None and now - d.at < self.offline_reuse else None

    def put(self, token: str, attrs: Attributes, decision: Decision) -> None:
        self._put(token_key(token), attrs, decision)

    def _put(self, key_digest: str, attrs: Attributes, decision: Decision) -> None:
        key = (key_digest, attrs)
        self._items[key] = decision
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def to_records(self, now: float, wall: float) -> list[dict[str, Any]]:
        """Recent allows as plain records with wall-clock times, so an agent restarted while
        cut off can still answer whom it answered just before (denies are not kept)."""
        return [
            {"token": key, "attrs": asdict(attrs), "user": d.user, "at": wall - (now - d.at)}
            for (key, attrs), d in self._items.items()
            if d.verdict is Verdict.ALLOW and now - d.at < self.offline_reuse
        ]

    def load_records(self, records: list[dict[str, Any]], now: float, wall: float) -> int:
        """Take back `to_records` output; entries older than the offline window (or from the
        future: a clock moved) are dropped. Returns how many were kept."""
        kept = 0
        for r in records:
            try:
                age = wall - float(r["at"])
                attrs = Attributes(**{k: str(v) for k, v in dict(r["attrs"]).items()})
                key, user = str(r["token"]), str(r["user"])
            except (KeyError, TypeError, ValueError):
                continue
            if 0 <= age < self.offline_reuse:
                self._put(key, attrs, Decision(Verdict.ALLOW, user, now - age))
                kept += 1
        return kept


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def cap_bytes(text: str, limit: int = MAX_LOG_BYTES) -> str:
    """The last `limit` bytes of `text` (whole lines where possible): a tail stays a tail."""
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[len(data) - limit :]
    nl = cut.find(b"\n")
    if 0 <= nl < len(cut) - 1:
        cut = cut[nl + 1 :]
    return cut.decode("utf-8", errors="replace")
