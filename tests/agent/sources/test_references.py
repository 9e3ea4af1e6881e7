"""OCI reference parsing, table-tested against what docker and containerd accept."""

from __future__ import annotations

import pytest

from wasmlet_agent.sources import InvalidSource, Reason, parse_reference
from wasmlet_agent.sources.references import Reference

D = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("value", "registry", "repository", "tag", "digest"),
    [
        ("hello", "docker.io", "library/hello", "latest", None),
        ("hello:1.0", "docker.io", "library/hello", "1.0", None),
        ("team/app", "docker.io", "team/app", "latest", None),
        ("docker.io/hello", "docker.io", "library/hello", "latest", None),
        ("index.docker.io/team/app:v2", "docker.io", "team/app", "v2", None),
        ("ghcr.io/org/app:1.0", "ghcr.io", "org/app", "1.0", None),
        ("ghcr.io/org/sub/app", "ghcr.io", "org/sub/app", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/x", "localhost:5000", "x", "latest", None),
        ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", None),
        ("[::1]:5000/app:v1", "[::1]:5000", "app", "v1", None),
        (f"registry.example.com/app@{D}", "registry.example.com", "app", None, D),
        (f"registry.example.com/app:v1@{D}", "registry.example.com", "app", "v1", D),
        (f"app:tag@{D}", "docker.io", "library/app", "tag", D),
        ("Example.com/app", "Example.com", "app", "latest", None),
        (
            "reg.io/a_b/c__d/e-f/g.h--i:Tag_1.2-x",
            "reg.io",
            "a_b/c__d/e-f/g.h--i",
            "Tag_1.2-x",
            None,
        ),
        ("  spaced.io/app  ", "spaced.io", "app", "latest", None),
    ],
)
def test_parse(
    value: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(value)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "empty"),
        ("http://reg.io/app", "scheme"),
        ("reg.io/App", "uppercase"),
        ("reg.io/app:", "tag"),
        ("reg.io/app:-bad", "tag"),
        ("reg.io/app@sha256:abc", "digest"),
        ("reg.io/app@md5:" + "a" * 32, "digest"),
        ("reg.io/", "repository"),
        ("reg.io//app", "repository"),
        ("reg.io/app/", "repository"),
        ("reg.io/-app", "repository"),
        ("reg.io/a b", "whitespace"),
        ("bad_host.io:x/app", "registry"),
        ("reg.io/" + "a" * 260, "longer"),
    ],
)
def test_invalid(value: str, problem: str) -> None:
    with pytest.raises(InvalidSource) as info:
        parse_reference(value)
    assert info.value.reason is Reason.INVALID_SOURCE
    assert problem in str(info.value)
    assert "expected [registry[:port]/]repository" in str(info.value)


@pytest.mark.parametrize(
    ("value", "canonical", "target", "api_host", "loopback"),
    [
        ("hello", "docker.io/library/hello:latest", "latest", "registry-1.docker.io", False),
        ("localhost:5000/x", "localhost:5000/x:latest", "latest", "localhost:5000", True),
        ("127.0.0.2/x:v", "127.0.0.2/x:v", "v", "127.0.0.2", True),
        ("[::1]:5000/x:v", "[::1]:5000/x:v", "v", "[::1]:5000", True),
        (f"r.io/x:v@{D}", f"r.io/x:v@{D}", D, "r.io", False),
        (f"r.io/x@{D}", f"r.io/x@{D}", D, "r.io", False),
    ],
)
def test_properties(value: str, canonical: str, target: str, api_host: str, loopback: bool) -> None:
    ref = parse_reference(value)
    assert str(ref) == canonical
    assert ref.target == target
    assert ref.api_host == api_host
    assert ref.is_loopback is loopback
    assert parse_reference(str(ref)) == ref


def test_with_digest_pins() -> None:
    ref = parse_reference("r.io/x:v1").with_digest(D)
    assert ref == Reference("r.io", "x", "v1", D)
    assert ref.pinned and ref.target == D
