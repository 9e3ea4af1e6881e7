"""Pushing modules to OCI registries: Wasm artifacts with an OCI client library (oras-py), and
plain images, odd manifests and indexes with raw Distribution API calls, independent of the
agent's own client that pulls them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from wasmlet.api.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_TAR_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_LAYER_TAR_GZIP,
    OCI_MANIFEST,
    WASM_CONFIG,
    WASM_LAYER,
)
from wasmlet_dev.registry import RegistryServer


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Pushed(NamedTuple):
    """What a push produced: the tag reference and the manifest digest."""

    reference: str
    digest: str

    @property
    def pinned(self) -> str:
        """The same manifest by digest: host/repo@sha256:..."""
        name, _, _ = self.reference.rpartition(":")  # helpers always push with a tag
        return f"{name}@{self.digest}"


def push_wasm_artifact(
    registry: RegistryServer | str,
    repo: str,
    tag: str,
    module: bytes,
    *,
    layer_media_type: str = WASM_LAYER,
    config_media_type: str = WASM_CONFIG,
) -> Pushed:
    """Push `module` as a Wasm OCI artifact with oras-py to a started RegistryServer, or to
    "host:port" of an anonymous plain-HTTP registry (`wasmlet dev up`'s)."""
    import oras.provider  # only dev tooling needs it (the `dev` extra)

    server = registry if isinstance(registry, RegistryServer) else None
    host = registry.host if isinstance(registry, RegistryServer) else registry
    tls = server is not None and server.tls
    client = oras.provider.Registry(
        hostname=host,
        insecure=not tls,
        tls_verify=str(server.ca_file) if server is not None and tls else True,
        auth_backend="token" if server is not None and server.auth == "token" else "basic",
    )
    if server is not None and server.token_service is not None:
        # oras-py would reuse its first (pull-only) token for the push; give it a push token.
        client.auth.set_token_auth(server.token_service.issue([f"repository:{repo}:pull,push"]))
    elif server is not None and server.username and server.password:
        client.auth.set_basic_auth(server.username, server.password)
    target = f"{host}/{repo}:{tag}"
    with tempfile.TemporaryDirectory(prefix="wasmlet-push-") as tmp:
        module_path = Path(tmp) / "module.wasm"
        module_path.write_bytes(module)
        config_path = Path(tmp) / "config.json"
        config = {
            "architecture": "wasm",
            "os": "wasip1",
            "layerDigests": [sha256_digest(module)],
            "created": "2025-01-01T00:00:00Z",
        }
        config_path.write_text(json.dumps(config))
        resp = client.push(
            target=target,
            files=[f"{module_path}:{layer_media_type}"],
            manifest_config=f"{config_path}:{config_media_type}",
            disable_path_validation=True,
            quiet=True,
        )
    return Pushed(target, resp.headers["Docker-Content-Digest"])


# -- raw Distribution API calls ----------------------------------------------------------------


def _call(
    server: RegistryServer,
    method: str,
    url: str,
    repo: str,
    data: bytes | None = None,
    ctype: str | None = None,
) -> tuple[int, Mapping[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    auth = server.authorization(repo)
    if auth:
        req.add_header("Authorization", auth)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=30, context=server.ssl_context()) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def push_blob(server: RegistryServer, repo: str, data: bytes) -> str:
    """Monolithic upload of one blob; its digest."""
    digest = sha256_digest(data)
    status, headers, body = _call(server, "POST", f"{server.url}/v2/{repo}/blobs/uploads/", repo)
    assert status == 202, (status, body)
    location = urllib.parse.urljoin(server.url, headers["Location"])
    sep = "&" if "?" in location else "?"
    url = f"{location}{sep}digest={urllib.parse.quote(digest)}"
    status, _, body = _call(server, "PUT", url, repo, data, "application/octet-stream")
    assert status == 201, (status, body)
    return digest


def push_manifest(
    server: RegistryServer, repo: str, ref: str, manifest: bytes, media_type: str
) -> str:
    url = f"{server.url}/v2/{repo}/manifests/{ref}"
    status, headers, body = _call(server, "PUT", url, repo, manifest, media_type)
    assert status == 201, (status, body)
    digest = sha256_digest(manifest)
    assert headers.get("Docker-Content-Digest") == digest
    return digest


def manifest_descriptor(server: RegistryServer, repo: str, digest: str) -> dict[str, Any]:
    accept = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST))
    req = urllib.request.Request(f"{server.url}/v2/{repo}/manifests/{digest}", method="GET")
    req.add_header("Accept", accept)
    auth = server.authorization(repo)
    if auth:
        req.add_header("Authorization", auth)
    with urllib.request.urlopen(req, timeout=30, context=server.ssl_context()) as r:
        body = r.read()
        ctype = r.headers["Content-Type"]
    return {"mediaType": ctype, "digest": digest, "size": len(body)}


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


def make_layer(files: Mapping[str, bytes], *, compress: bool = True) -> bytes:
    """A rootfs tar (gzip-compressed by default) holding `files` (path -> content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in files} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def push_image(
    server: RegistryServer,
    repo: str,
    tag: str,
    files: Mapping[str, bytes],
    *,
    docker: bool = False,
    compress: bool = True,
    entrypoint: Sequence[str] | None = None,
    extra_layers: Sequence[Mapping[str, bytes]] = (),
    os_arch: tuple[str, str] = ("wasi", "wasm"),
) -> Pushed:
    """Push a plain image whose single layer holds `files`, as OCI or Docker schema 2."""
    layers = [make_layer(files, compress=compress)]
    layers += [make_layer(f, compress=compress) for f in extra_layers]
    config = {
        "architecture": os_arch[1],
        "os": os_arch[0],
        "config": {"Entrypoint": list(entrypoint)} if entrypoint else {},
        "rootfs": {
            "type": "layers",
            "diff_ids": [sha256_digest(gzip.decompress(x) if compress else x) for x in layers],
        },
    }
    config_bytes = json.dumps(config).encode()
    if docker:
        manifest_type, config_type, layer_type = (
            DOCKER_MANIFEST,
            DOCKER_CONFIG,
            DOCKER_LAYER_TAR_GZIP,
        )
    else:
        manifest_type, config_type = OCI_MANIFEST, OCI_CONFIG
        layer_type = OCI_LAYER_TAR_GZIP if compress else OCI_LAYER_TAR
    for blob in (*layers, config_bytes):
        push_blob(server, repo, blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": _descriptor(config_type, config_bytes),
        "layers": [_descriptor(layer_type, x) for x in layers],
    }
    digest = push_manifest(server, repo, tag, json.dumps(manifest).encode(), manifest_type)
    return Pushed(f"{server.host}/{repo}:{tag}", digest)


def push_manifest_with(
    server: RegistryServer,
    repo: str,
    tag: str,
    layers: Sequence[tuple[str, bytes]],
    *,
    config: tuple[str, bytes] = (WASM_CONFIG, b"{}"),
    media_type: str = OCI_MANIFEST,
) -> Pushed:
    """Push an image manifest with arbitrary (media type, content) layers."""
    for _, data in (*layers, config):
        push_blob(server, repo, data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": _descriptor(config[0], config[1]),
        "layers": [_descriptor(mt, data) for mt, data in layers],
    }
    digest = push_manifest(server, repo, tag, json.dumps(manifest).encode(), media_type)
    return Pushed(f"{server.host}/{repo}:{tag}", digest)


def push_index(
    server: RegistryServer,
    repo: str,
    tag: str,
    entries: Sequence[tuple[Pushed, Mapping[str, str] | None]],
) -> Pushed:
    """Push an OCI index over already-pushed manifests, each with an optional platform."""
    manifests = []
    for pushed, platform in entries:
        desc = manifest_descriptor(server, repo, pushed.digest)
        if platform is not None:
            desc["platform"] = dict(platform)
        manifests.append(desc)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    digest = push_manifest(server, repo, tag, json.dumps(index).encode(), OCI_INDEX)
    return Pushed(f"{server.host}/{repo}:{tag}", digest)
