"""Pushing a module to an OCI registry as a Wasm artifact (the media types of the Wasm OCI
artifact layout), with plain Distribution API calls: blobs by monolithic upload, then the
manifest."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
import urllib.request

WASM_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.wasm.config.v0+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _request(method: str, url: str, data: bytes | None = None, ctype: str | None = None) -> str:
    req = urllib.request.Request(url, data=data, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(resp.headers.get("Location") or "")


def _push_blob(base: str, repo: str, data: bytes) -> str:
    digest = _digest(data)
    location = _request("POST", f"{base}/v2/{repo}/blobs/uploads/")
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    url = f"{location}{sep}digest={urllib.parse.quote(digest)}"
    _request("PUT", url, data, "application/octet-stream")
    return digest


def push_wasm(registry: str, repo: str, tag: str, wasm: bytes) -> tuple[str, str]:
    """Push over plain HTTP (a loopback registry); returns (reference, manifest digest)."""
    base = f"http://{registry}"
    config = json.dumps(
        {"created": "1970-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip1"}
    ).encode()
    layer_digest = _push_blob(base, repo, wasm)
    config_digest = _push_blob(base, repo, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": WASM_CONFIG,
            "config": {"mediaType": WASM_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [
                {
                    "mediaType": WASM_LAYER,
                    "digest": layer_digest,
                    "size": len(wasm),
                    "annotations": {"org.opencontainers.image.title": "module.wasm"},
                }
            ],
        }
    ).encode()
    _request("PUT", f"{base}/v2/{repo}/manifests/{tag}", manifest, OCI_MANIFEST)
    return f"{registry}/{repo}:{tag}", _digest(manifest)
