"""OCI media types the agent reads and dev tooling writes: one spelling for both sides."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

# The Wasm OCI artifact layout (CNCF TAG Runtime) and older spellings seen in the wild.
WASM_CONFIG = "application/vnd.wasm.config.v0+json"
WASM_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
WASM_LAYER_TYPES = frozenset(
    {WASM_LAYER, "application/wasm", "application/vnd.module.wasm.content.layer.v1+wasm"}
)

# Plain container image layers: a tar whose files hold the module.
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
TAR_LAYER_TYPES = frozenset(
    {OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, OCI_LAYER_TAR_ZSTD, DOCKER_LAYER_TAR_GZIP, DOCKER_LAYER_TAR}
)
