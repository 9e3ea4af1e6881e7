"""Pulling modules from a real registry (docker-registry on loopback): layouts, auth, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agent.sources.helpers import wasm_module
from wasmlet.api.mediatypes import OCI_LAYER_TAR, WASM_LAYER
from wasmlet_agent.sources import (
    DigestMismatch,
    DockerConfig,
    InvalidSource,
    NotFound,
    NotWasm,
    NoWasmLayer,
    OciClient,
    Reason,
    TLSError,
    TooLarge,
    Unauthorized,
    Unreachable,
    Unsupported,
    compute_digest,
    parse_reference,
    pull,
)
from wasmlet_agent.sources.oci import Credentials, parse_challenge
from wasmlet_dev.oci import push_image, push_index, push_manifest_with, push_wasm_artifact
from wasmlet_dev.ports import free_port as closed_port
from wasmlet_dev.registry import RegistryServer

# -- Wasm OCI artifacts ------------------------------------------------------------------------


def test_pull_artifact_by_tag(registry: RegistryServer) -> None:
    module = wasm_module("by_tag")
    pushed = push_wasm_artifact(registry, "apps/by-tag", "v1", module)
    got = pull(pushed.reference, insecure=True)
    assert got.data == module
    assert got.digest == compute_digest(module)
    assert got.manifest_digest == pushed.digest
    assert got.source == pushed.pinned


def test_pull_artifact_by_digest(registry: RegistryServer) -> None:
    module = wasm_module("by_digest")
    pushed = push_wasm_artifact(registry, "apps/by-digest", "v1", module)
    got = pull(pushed.pinned, insecure=True, expected_digest=compute_digest(module))
    assert got.data == module
    assert got.manifest_digest == pushed.digest


def test_tag_and_digest_pulls_the_digest_and_tags_are_not_memoized(
    registry: RegistryServer,
) -> None:
    first, second = wasm_module("tag_v1"), wasm_module("tag_v2")
    old = push_wasm_artifact(registry, "apps/moving", "stable", first)
    client = OciClient(insecure=True)
    assert client.pull(old.reference).data == first
    new = push_wasm_artifact(registry, "apps/moving", "stable", second)
    # The same client sees the tag move: no tag -> digest memo.
    assert client.pull(new.reference).data == second
    assert client.pull(f"{old.reference}@{old.digest}").data == first


def test_resolve_knows_the_module_digest_before_download(registry: RegistryServer) -> None:
    module = wasm_module("resolve")
    pushed = push_wasm_artifact(registry, "apps/resolve", "v1", module)
    client = OciClient(insecure=True)
    resolved = client.resolve(pushed.reference)
    assert resolved.module_digest == compute_digest(module)
    assert resolved.manifest_digest == pushed.digest
    assert str(resolved.pinned_reference) == f"{pushed.reference}@{pushed.digest}"
    assert client.fetch(resolved).data == module


def test_application_wasm_layer_type(registry: RegistryServer) -> None:
    module = wasm_module("app_wasm")
    pushed = push_wasm_artifact(
        registry, "apps/appwasm", "v1", module, layer_media_type="application/wasm"
    )
    assert pull(pushed.reference, insecure=True).data == module


def test_oras_default_tar_type_holding_raw_wasm(registry: RegistryServer) -> None:
    # `oras push reg/x app.wasm` labels the raw file with the tar layer type.
    module = wasm_module("oras_default")
    pushed = push_wasm_artifact(
        registry, "apps/oras-default", "v1", module, layer_media_type=OCI_LAYER_TAR
    )
    assert pull(pushed.reference, insecure=True).data == module


def test_expected_digest_mismatch(registry: RegistryServer) -> None:
    module = wasm_module("expected")
    pushed = push_wasm_artifact(registry, "apps/expected", "v1", module)
    wrong = compute_digest(b"something else")
    with pytest.raises(DigestMismatch) as info:
        pull(pushed.reference, insecure=True, expected_digest=wrong)
    assert (info.value.expected, info.value.actual) == (wrong, compute_digest(module))
    assert not info.value.retryable


def test_wasm_layer_holding_other_bytes_is_not_wasm(registry: RegistryServer) -> None:
    pushed = push_manifest_with(registry, "apps/fake", "v1", [(WASM_LAYER, b"#!/bin/sh\necho\n")])
    with pytest.raises(NotWasm) as info:
        pull(pushed.reference, insecure=True)
    assert info.value.reason is Reason.NOT_WASM


def test_no_wasm_layer_lists_media_types(registry: RegistryServer) -> None:
    pushed = push_manifest_with(
        registry,
        "apps/helm-chart",
        "v1",
        [("application/vnd.cncf.helm.chart.content.v1.tar+gzip", b"chart")],
        config=("application/vnd.cncf.helm.config.v1+json", b"{}"),
    )
    with pytest.raises(NoWasmLayer) as info:
        pull(pushed.reference, insecure=True)
    msg = str(info.value)
    assert "application/vnd.cncf.helm.chart.content.v1.tar+gzip" in msg
    assert "application/vnd.cncf.helm.config.v1+json" in msg
    assert WASM_LAYER in msg  # says what to push instead
    assert info.value.reason is Reason.NO_WASM_LAYER and not info.value.retryable


def test_two_wasm_layers_are_refused(registry: RegistryServer) -> None:
    pushed = push_manifest_with(
        registry,
        "apps/two",
        "v1",
        [(WASM_LAYER, wasm_module("two_a")), (WASM_LAYER, wasm_module("two_b"))],
    )
    with pytest.raises(NoWasmLayer, match="2 Wasm layers"):
        pull(pushed.reference, insecure=True)


def test_size_limit(registry: RegistryServer) -> None:
    module = wasm_module("limit")
    pushed = push_wasm_artifact(registry, "apps/limit", "v1", module)
    with pytest.raises(TooLarge):
        pull(pushed.reference, insecure=True, max_module_bytes=len(module) - 1)


# -- plain single-layer images -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("docker", "compress"),
    [(False, True), (False, False), (True, True)],
    ids=["oci-gz", "oci-tar", "docker"],
)
def test_plain_image(registry: RegistryServer, docker: bool, compress: bool) -> None:
    module = wasm_module(f"plain_{docker}_{compress}")
    files = {"etc/readme.txt": b"hello", "app/bin/hello.wasm": module}
    pushed = push_image(
        registry, "images/plain", f"{docker}-{compress}", files, docker=docker, compress=compress
    )
    got = pull(pushed.reference, insecure=True, expected_digest=compute_digest(module))
    assert got.data == module
    assert got.source.endswith("file app/bin/hello.wasm")
    client = OciClient(insecure=True)
    assert client.resolve(pushed.reference).module_digest is None  # known only after extraction


def test_plain_image_with_several_modules_lists_them(registry: RegistryServer) -> None:
    files = {"a.wasm": wasm_module("several_a"), "lib/b.wasm": wasm_module("several_b")}
    pushed = push_image(registry, "images/several", "v1", files)
    with pytest.raises(NoWasmLayer) as info:
        pull(pushed.reference, insecure=True)
    assert "a.wasm, lib/b.wasm" in str(info.value)


def test_plain_image_entrypoint_picks_among_several(registry: RegistryServer) -> None:
    b = wasm_module("entry_b")
    files = {"a.wasm": wasm_module("entry_a"), "lib/b.wasm": b}
    pushed = push_image(registry, "images/entry", "v1", files, entrypoint=["/lib/b.wasm"])
    assert pull(pushed.reference, insecure=True).data == b


def test_plain_image_without_wasm(registry: RegistryServer) -> None:
    pushed = push_image(registry, "images/nowasm", "v1", {"bin/sh": b"\x7fELF"})
    with pytest.raises(NoWasmLayer, match=r"no \.wasm file"):
        pull(pushed.reference, insecure=True)


def test_multi_layer_image_is_refused(registry: RegistryServer) -> None:
    pushed = push_image(
        registry,
        "images/multi",
        "v1",
        {"a.wasm": wasm_module("multi")},
        extra_layers=[{"etc/x": b"x"}],
    )
    with pytest.raises(NoWasmLayer, match="single-layer"):
        pull(pushed.reference, insecure=True)


def test_index_picks_the_wasi_platform(registry: RegistryServer) -> None:
    module = wasm_module("index")
    linux = push_image(
        registry, "images/multiarch", "linux", {"bin/app": b"\x7fELF"}, os_arch=("linux", "amd64")
    )
    wasi = push_image(registry, "images/multiarch", "wasi", {"app.wasm": module})
    index = push_index(
        registry,
        "images/multiarch",
        "v1",
        [
            (linux, {"os": "linux", "architecture": "amd64"}),
            (wasi, {"os": "wasi", "architecture": "wasm"}),
        ],
    )
    client = OciClient(insecure=True)
    resolved = client.resolve(index.reference)
    assert resolved.manifest_digest == index.digest
    assert resolved.image_manifest_digest == wasi.digest
    got = client.fetch(resolved)
    assert got.data == module
    assert got.manifest_digest == index.digest


def test_index_without_wasi_platform_lists_platforms(registry: RegistryServer) -> None:
    amd = push_image(
        registry, "images/linux-only", "amd", {"bin/app": b"\x7fELF"}, os_arch=("linux", "amd64")
    )
    arm = push_image(
        registry, "images/linux-only", "arm", {"bin/app": b"\x7fELF"}, os_arch=("linux", "arm64")
    )
    index = push_index(
        registry,
        "images/linux-only",
        "v1",
        [
            (amd, {"os": "linux", "architecture": "amd64"}),
            (arm, {"os": "linux", "architecture": "arm64"}),
        ],
    )
    with pytest.raises(NoWasmLayer) as info:
        pull(index.reference, insecure=True)
    assert "linux/amd64, linux/arm64" in str(info.value)
    assert "wasi/wasm" in str(info.value)


# -- integrity of what the registry serves ------------------------------------------------------


def _blob_file(registry: RegistryServer, digest: str) -> Path:
    h = digest.split(":", 1)[1]
    return registry.workdir / "storage/docker/registry/v2/blobs/sha256" / h[:2] / h / "data"


def test_tampered_layer_is_detected(registry: RegistryServer) -> None:
    module = wasm_module("tamper_layer")
    pushed = push_wasm_artifact(registry, "integrity/layer", "v1", module)
    blob = _blob_file(registry, compute_digest(module))
    flipped = bytearray(module)
    flipped[-1] ^= 0xFF
    blob.write_bytes(bytes(flipped))  # same size, other content
    with pytest.raises(DigestMismatch) as info:
        pull(pushed.reference, insecure=True)
    assert info.value.expected == compute_digest(module)
    assert info.value.actual == compute_digest(bytes(flipped))


def test_tampered_manifest_is_detected_when_pulled_by_digest(registry: RegistryServer) -> None:
    pushed = push_wasm_artifact(registry, "integrity/manifest", "v1", wasm_module("tamper_m"))
    blob = _blob_file(registry, pushed.digest)
    manifest = json.loads(blob.read_bytes())
    manifest["annotations"] = {"x": "y"}
    blob.write_bytes(json.dumps(manifest).encode())
    with pytest.raises(DigestMismatch) as info:
        pull(pushed.pinned, insecure=True)
    assert info.value.expected == pushed.digest


# -- failures ----------------------------------------------------------------------------------


def test_unknown_tag(registry: RegistryServer) -> None:
    push_wasm_artifact(registry, "apps/known", "v1", wasm_module("known"))
    with pytest.raises(NotFound) as info:
        pull(f"{registry.host}/apps/known:nope", insecure=True)
    assert "tag nope not found" in str(info.value)
    assert info.value.reason is Reason.MODULE_NOT_FOUND and info.value.retryable


def test_unknown_repository(registry: RegistryServer) -> None:
    with pytest.raises(NotFound, match="repository apps/never-pushed not found"):
        pull(f"{registry.host}/apps/never-pushed:v1", insecure=True)


def test_unknown_digest(registry: RegistryServer) -> None:
    push_wasm_artifact(registry, "apps/known-d", "v1", wasm_module("known_d"))
    missing = compute_digest(b"never pushed")
    with pytest.raises(NotFound, match=f"digest {missing} not found"):
        pull(f"{registry.host}/apps/known-d@{missing}", insecure=True)


def test_unreachable_registry() -> None:
    port = closed_port()
    with pytest.raises(Unreachable) as info:
        pull(f"127.0.0.1:{port}/apps/x:v1", insecure=True, timeout=5)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert info.value.reason is Reason.SOURCE_UNREACHABLE and info.value.retryable


def test_https_to_plain_http_registry_says_set_insecure(registry: RegistryServer) -> None:
    with pytest.raises(TLSError) as info:
        pull(f"{registry.host}/apps/x:v1", timeout=5)
    assert "insecure: true" in str(info.value)


# -- auth --------------------------------------------------------------------------------------


def test_basic_auth(registry_auth: RegistryServer) -> None:
    module = wasm_module("basic")
    pushed = push_wasm_artifact(registry_auth, "private/basic", "v1", module)
    got = pull(pushed.reference, insecure=True, docker_config=registry_auth.docker_config())
    assert got.data == module


def test_basic_auth_wrong_password(registry_auth: RegistryServer) -> None:
    pushed = push_wasm_artifact(registry_auth, "private/basic-wrong", "v1", wasm_module("bw"))
    config = registry_auth.docker_config(password="wrong")
    with pytest.raises(Unauthorized) as info:
        pull(pushed.reference, insecure=True, docker_config=config)
    assert "rejected the credentials" in str(info.value)
    assert info.value.reason is Reason.UNAUTHORIZED and not info.value.retryable


def test_basic_auth_without_credentials(registry_auth: RegistryServer) -> None:
    pushed = push_wasm_artifact(registry_auth, "private/basic-none", "v1", wasm_module("bn"))
    with pytest.raises(Unauthorized) as info:
        pull(pushed.reference, insecure=True)
    assert "pullSecret" in str(info.value) and registry_auth.host in str(info.value)


def test_credentials_for_another_registry_do_not_apply(registry_auth: RegistryServer) -> None:
    pushed = push_wasm_artifact(registry_auth, "private/other", "v1", wasm_module("other"))
    config = {"auths": {"elsewhere.example.com": {"username": "u", "password": "p"}}}
    with pytest.raises(Unauthorized, match="requires credentials"):
        pull(pushed.reference, insecure=True, docker_config=config)


def test_bearer_token_flow(registry_token: RegistryServer) -> None:
    module = wasm_module("bearer")
    pushed = push_wasm_artifact(registry_token, "private/bearer", "v1", module)
    plain = push_image(registry_token, "private/bearer-image", "v1", {"m.wasm": module})
    service = registry_token.token_service
    assert service is not None
    before = len(service.requests)
    client = OciClient(
        insecure=True, docker_config=DockerConfig.parse(registry_token.docker_config())
    )
    assert client.pull(pushed.reference).data == module
    assert client.pull(pushed.pinned).data == module
    assert client.pull(plain.reference).data == module
    asked = service.requests[before:]
    # One token per repository, reused for manifests and blobs, requested with the scope
    # the registry's challenge named and the account of the pull secret.
    assert [q["scope"] for q in asked] == [
        ["repository:private/bearer:pull"],
        ["repository:private/bearer-image:pull"],
    ]
    assert all(q["service"] == ["wasmlet-test-registry"] for q in asked)
    assert all(q["account"] == ["wasmlet"] for q in asked)


def test_bearer_wrong_password(registry_token: RegistryServer) -> None:
    pushed = push_wasm_artifact(registry_token, "private/bearer-wrong", "v1", wasm_module("bw2"))
    config = registry_token.docker_config(password="wrong")
    with pytest.raises(Unauthorized, match="rejected the credentials"):
        pull(pushed.reference, insecure=True, docker_config=config)


def test_bearer_without_credentials(registry_token: RegistryServer) -> None:
    pushed = push_wasm_artifact(registry_token, "private/bearer-none", "v1", wasm_module("bn2"))
    with pytest.raises(Unauthorized, match="pullSecret"):
        pull(pushed.reference, insecure=True)


# -- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
            'scope="repository:team/app:pull"',
            "bearer",
            {
                "realm": "https://auth.example.com/token",
                "service": "registry.example.com",
                "scope": "repository:team/app:pull",
            },
        ),
        ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
        (
            "Bearer realm=https://a/t, service=reg",
            "bearer",
            {"realm": "https://a/t", "service": "reg"},
        ),
        (
            'Bearer realm="a\\"b",error="insufficient_scope"',
            "bearer",
            {"realm": 'a"b', "error": "insufficient_scope"},
        ),
        ("Basic", "basic", {}),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    ch = parse_challenge(header)
    assert ch.scheme == scheme and dict(ch.params) == params


@pytest.mark.parametrize(
    ("auths", "registry", "expected"),
    [
        ({"r.io": {"username": "u", "password": "p"}}, "r.io", Credentials("u", "p")),
        ({"r.io": {"auth": "dTpwOmFzcw=="}}, "r.io", Credentials("u", "p:ass")),
        ({"https://r.io/v2/": {"username": "u", "password": "p"}}, "r.io", Credentials("u", "p")),
        (
            {"https://index.docker.io/v1/": {"username": "u", "password": "p"}},
            "docker.io",
            Credentials("u", "p"),
        ),
        ({"R.IO:5000": {"username": "u", "password": "p"}}, "r.io:5000", Credentials("u", "p")),
        ({"r.io": {"username": "u", "password": "p"}}, "r.io:5000", None),
        ({"r.io": {"identitytoken": "t"}}, "r.io", None),
    ],
)
def test_docker_config(
    auths: dict[str, object], registry: str, expected: Credentials | None
) -> None:
    config = DockerConfig.parse(json.dumps({"auths": auths}))
    assert config.credentials_for(registry) == expected
    assert DockerConfig.parse({"auths": auths}).credentials_for(registry) == expected


def test_docker_config_errors() -> None:
    with pytest.raises(InvalidSource, match=r"not valid \.dockerconfigjson"):
        DockerConfig.parse("{not json")
    with pytest.raises(InvalidSource, match="user:password"):
        DockerConfig.parse({"auths": {"r.io": {"auth": "bm9jb2xvbg=="}}})  # "nocolon"


def test_credentials_repr_hides_password() -> None:
    assert "secret" not in repr(Credentials("u", "secret"))


def test_reference_string_and_object_agree(registry: RegistryServer) -> None:
    module = wasm_module("ref_obj")
    pushed = push_wasm_artifact(registry, "apps/ref-obj", "v1", module)
    client = OciClient(insecure=True)
    assert client.pull(parse_reference(pushed.reference)).data == module


# -- layers the agent cannot or must not read --------------------------------------------------


def test_layer_that_unpacks_too_large_is_refused(registry: RegistryServer) -> None:
    # 40 MiB of zeros gzip to ~40 KiB; unpacking stops at twice the layer limit.
    files = {"zeros.bin": bytes(40 << 20), "app.wasm": wasm_module("bomb")}
    pushed = push_image(registry, "images/bomb", "v1", files)
    with pytest.raises(TooLarge, match="unpacks to more"):
        pull(pushed.reference, insecure=True, max_module_bytes=1024)


def test_zstd_layer_says_use_gzip(registry: RegistryServer) -> None:
    zstd_frame = b"\x28\xb5\x2f\xfd" + bytes(16)
    pushed = push_manifest_with(
        registry,
        "images/zstd",
        "v1",
        [("application/vnd.oci.image.layer.v1.tar+zstd", zstd_frame)],
        config=("application/vnd.oci.image.config.v1+json", b"{}"),
    )
    with pytest.raises(Unsupported, match="gzip"):
        pull(pushed.reference, insecure=True)


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_registry_with_its_ca(registry_tls: RegistryServer) -> None:
    module = wasm_module("tls")
    pushed = push_wasm_artifact(registry_tls, "secure/app", "v1", module)
    got = pull(pushed.reference, ca_file=str(registry_tls.ca_file))
    assert got.data == module


def test_tls_registry_with_unknown_ca(registry_tls: RegistryServer) -> None:
    pushed = push_wasm_artifact(registry_tls, "secure/unknown-ca", "v1", wasm_module("tls_ca"))
    with pytest.raises(TLSError) as info:
        pull(pushed.reference, timeout=5)
    assert "certificate" in str(info.value)
    assert not info.value.retryable


def test_insecure_flag_against_tls_registry_says_unset_it(registry_tls: RegistryServer) -> None:
    pushed = push_wasm_artifact(registry_tls, "secure/plain", "v1", wasm_module("tls_plain"))
    with pytest.raises(TLSError, match="unset it"):
        pull(pushed.reference, insecure=True, timeout=5)
