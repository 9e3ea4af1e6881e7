"""OCI image references parsed the way docker and containerd do, so users' strings mean the same."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from wasmlet_agent.sources.base import InvalidSource
from wasmlet_agent.sources.digests import DIGEST_RE

DOCKER_HUB = "docker.io"
# Docker Hub's name is not the host that serves the Distribution API.
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?$"
)
_TAG_RE = re.compile(r"^\w[\w.-]{0,127}$")


@dataclass(frozen=True)
class Reference:
    """registry/repository[:tag][@digest]; a digest, when present, is what gets pulled."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """host[:port] that serves /v2/ for this registry."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def target(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    @property
    def hostname(self) -> str:
        """The registry host without port or IPv6 brackets."""
        host = self.registry
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.hostname)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        s = self.name
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (a host name without port or brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _invalid(value: str, problem: str) -> InvalidSource:
    return InvalidSource(
        f"invalid OCI reference {value!r}: {problem}; expected "
        "[registry[:port]/]repository[:tag][@sha256:<64 hex>], e.g. "
        "ghcr.io/org/app:1.0 or localhost:5000/app@sha256:..."
    )


def parse_reference(value: str) -> Reference:
    """Parse a reference; a missing registry means Docker Hub, a missing tag and digest `latest`."""
    s = value.strip()
    if not s:
        raise _invalid(value, "it is empty")
    if any(c.isspace() for c in s):
        raise _invalid(value, "it contains whitespace")
    if "://" in s:
        raise _invalid(value, "drop the scheme (http:// or https://); set insecure for plain HTTP")

    digest: str | None = None
    if "@" in s:
        s, digest = s.rsplit("@", 1)
        if not DIGEST_RE.match(digest):
            raise _invalid(value, f"digest {digest!r} is not sha256: followed by 64 lowercase hex")

    tag: str | None = None
    slash, colon = s.rfind("/"), s.rfind(":")
    if colon > slash:
        s, tag = s[:colon], s[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise _invalid(
                value, f"tag {tag!r} must be 1-128 of letters, digits, _ . - (not starting . -)"
            )

    if len(s) > MAX_NAME_LENGTH:
        raise _invalid(value, f"the name is longer than {MAX_NAME_LENGTH} characters")

    first, sep, rest = s.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, path = first, rest
        if not _HOST_RE.match(registry):
            raise _invalid(value, f"registry {registry!r} is not a host[:port]")
        if registry == "index.docker.io":
            registry = DOCKER_HUB
    else:
        registry, path = DOCKER_HUB, s
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"

    if not path:
        raise _invalid(value, "the repository is missing")
    if not _PATH_RE.match(path):
        problem = f"repository {path!r} must be lowercase letters, digits and separators . _ __ -"
        if path != path.lower():
            problem += " (uppercase is not allowed)"
        raise _invalid(value, problem)

    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)
