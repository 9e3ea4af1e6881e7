"""A minimal OCI Distribution client: pull one Wasm module from a registry, verifying every byte.

Long (~750 lines) on purpose: the Distribution protocol (auth challenges, manifests, indexes,
media types, blob redirects) is one client with one error vocabulary; its parts are private.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import re
import tarfile
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wasmlet.api.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    OCI_ARTIFACT_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    TAR_LAYER_TYPES,
    WASM_CONFIG,
    WASM_LAYER,
    WASM_LAYER_TYPES,
)
from wasmlet_agent.sources import transport
from wasmlet_agent.sources.base import (
    DEFAULT_MAX_MODULE_BYTES,
    InvalidSource,
    ModuleBytes,
    NotFound,
    NoWasmLayer,
    ServerError,
    SourceError,
    TLSError,
    TooLarge,
    Unauthorized,
    Unsupported,
    check_size,
    check_wasm,
)
from wasmlet_agent.sources.digests import DigestMismatch, compute_digest, is_digest, verify_digest
from wasmlet_agent.sources.references import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    Reference,
    is_loopback_host,
    parse_reference,
)

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST, OCI_ARTIFACT_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))
WASM_ARCHITECTURES = frozenset({"wasm", "wasm32"})

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_MAX_INDEX_DEPTH = 2
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# ---------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", DOCKER_HUB_API, "registry.hub.docker.com"})


def _normalize_host(key: str) -> str:
    # Keys may be "host", "https://host", "https://index.docker.io/v1/".
    s = key.strip()
    if "://" in s:
        s = urllib.parse.urlsplit(s).netloc
    s = s.split("/", 1)[0].lower()
    return DOCKER_HUB if s in _HUB_ALIASES else s


class DockerConfig:
    """Registry credentials from a kubernetes.io/dockerconfigjson Secret's decoded content."""

    def __init__(self, auths: Mapping[str, Credentials]) -> None:
        self._auths = {_normalize_host(k): v for k, v in auths.items()}

    @classmethod
    def parse(cls, content: Mapping[str, Any] | str | bytes) -> DockerConfig:
        """Accept `{"auths": {host: {...}}}` or a legacy .dockercfg host map, as dict or JSON."""
        if isinstance(content, str | bytes):
            try:
                content = json.loads(content)
            except ValueError as e:
                raise InvalidSource(
                    f"pull secret is not valid .dockerconfigjson JSON ({e}); recreate it with "
                    "kubectl create secret docker-registry"
                ) from e
        if not isinstance(content, Mapping):
            raise InvalidSource('pull secret content must be a JSON object {"auths": {...}}')
        auths = content.get("auths", content)
        if not isinstance(auths, Mapping):
            raise InvalidSource('pull secret "auths" must map registry hosts to credentials')
        parsed: dict[str, Credentials] = {}
        for host, entry in auths.items():
            if not isinstance(entry, Mapping):
                continue
            creds = _entry_credentials(str(host), entry)
            if creds is not None:
                parsed[str(host)] = creds
        return cls(parsed)

    def credentials_for(self, registry: str) -> Credentials | None:
        return self._auths.get(_normalize_host(registry))

    @property
    def registries(self) -> list[str]:
        return sorted(self._auths)


def _entry_credentials(host: str, entry: Mapping[str, Any]) -> Credentials | None:
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return Credentials(username, password)
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise InvalidSource(
                f'pull secret entry for {host}: "auth" is not base64 of user:password ({e})'
            ) from e
        user, sep, pw = decoded.partition(":")
        if not sep:
            raise InvalidSource(f'pull secret entry for {host}: "auth" must encode user:password')
        return Credentials(user, pw)
    return None


# ---------------------------------------------------------------------------------------------
# WWW-Authenticate

_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge:
    """`Bearer realm="https://auth",service="reg",scope="repository:x:pull"` -> Challenge."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _CHALLENGE_PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)


# ---------------------------------------------------------------------------------------------
# Descriptors and resolution


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, obj: Any, where: str) -> Descriptor:
        if not isinstance(obj, Mapping):
            raise ServerError(f"{where}: descriptor is not a JSON object")
        media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise ServerError(f"{where}: descriptor lacks mediaType or digest")
        if not is_digest(digest):
            raise Unsupported(
                f"{where}: descriptor digest {digest!r} is not sha256; wasmlet verifies sha256 "
                "only — re-push the artifact with sha256 digests"
            )
        if not isinstance(size, int) or size < 0:
            raise ServerError(f"{where}: descriptor size {size!r} is not a non-negative integer")
        annotations = obj.get("annotations")
        platform = obj.get("platform")
        return cls(
            media_type,
            digest,
            size,
            annotations if isinstance(annotations, Mapping) else {},
            platform if isinstance(platform, Mapping) else None,
        )

    @property
    def title(self) -> str | None:
        title = self.annotations.get("org.opencontainers.image.title")
        return title if isinstance(title, str) else None


@dataclass(frozen=True)
class ResolvedModule:
    """Which blob holds the module: the result of reading manifests, before any layer download."""

    reference: Reference
    manifest_digest: str  # of the manifest or index the reference names
    image_manifest_digest: str  # of the image manifest chosen (differs when via an index)
    layer: Descriptor
    is_wasm_layer: bool  # False: a tar layer to extract the .wasm from
    config: Descriptor | None = None

    @property
    def module_digest(self) -> str | None:
        """The module's digest when known before download (a Wasm layer's digest)."""
        return self.layer.digest if self.is_wasm_layer else None

    @property
    def pinned_reference(self) -> Reference:
        return self.reference.with_digest(self.manifest_digest)


@dataclass(frozen=True)
class _Manifest:
    media_type: str
    digest: str
    body: Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# Client


class OciClient:
    """Pulls modules from registries; safe to reuse for many pulls (remembers tokens per repo)."""

    def __init__(
        self,
        *,
        docker_config: DockerConfig | None = None,
        insecure: bool = False,
        timeout: float = 30.0,
        max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
        ca_file: str | None = None,
    ) -> None:
        self.docker_config = docker_config
        self.insecure = insecure
        self.timeout = timeout
        self.max_module_bytes = max_module_bytes
        self._context = transport.ssl_context(ca_file)
        # Authorization header values that worked, per (api host, repository).
        self._auth: dict[tuple[str, str], str] = {}

    # -- public ---------------------------------------------------------------------------

    def pull(
        self, reference: str | Reference, *, expected_digest: str | None = None
    ) -> ModuleBytes:
        """Resolve and download; `expected_digest` is the module's (not the manifest's) digest."""
        return self.fetch(self.resolve(reference), expected_digest=expected_digest)

    def resolve(self, reference: str | Reference) -> ResolvedModule:
        """Read the manifest(s) and choose the layer holding the module."""
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        top = self._manifest(ref, ref.target)
        manifest = top
        for _ in range(_MAX_INDEX_DEPTH):
            if manifest.media_type not in INDEX_TYPES:
                break
            child = _pick_platform(manifest, ref)
            manifest = self._manifest(ref, child.digest)
        if manifest.media_type in INDEX_TYPES:
            raise Unsupported(f"{ref}: indexes nested deeper than {_MAX_INDEX_DEPTH} levels")
        layer, is_wasm, config = _pick_layer(manifest, ref)
        return ResolvedModule(ref, top.digest, manifest.digest, layer, is_wasm, config)

    def fetch(self, resolved: ResolvedModule, *, expected_digest: str | None = None) -> ModuleBytes:
        """Download the chosen layer, verify it and (for image layers) extract the .wasm file."""
        ref, layer = resolved.reference, resolved.layer
        pinned = f"{ref.name}@{resolved.manifest_digest}"
        limit = self.max_module_bytes if resolved.is_wasm_layer else self._layer_limit()
        check_size(layer.size, limit, f"layer {layer.digest} of {pinned}")
        blob = self.fetch_blob(ref, layer.digest, limit)
        what = f"module in {pinned}"
        if resolved.is_wasm_layer or blob[:4] == b"\0asm":
            data, source = blob, pinned
        else:
            name, data = self._extract(resolved, blob)
            source = f"{pinned} file {name}"
            what = f"{name} in {pinned}"
        check_size(len(data), self.max_module_bytes, what)
        if expected_digest is not None:
            verify_digest(data, expected_digest, what)
        check_wasm(data, what)
        return ModuleBytes.of(data, source, resolved.manifest_digest)

    def fetch_blob(self, ref: Reference, digest: str, limit: int) -> bytes:
        what = f"blob {digest} of {ref.name}"
        resp = self._get(ref, f"blobs/{digest}", what, limit)
        if resp.status != 200:
            raise self._status_error(resp, ref, what, blob=digest)
        verify_digest(resp.body, digest, what)
        return resp.body

    # -- manifests ------------------------------------------------------------------------

    def _manifest(self, ref: Reference, target: str) -> _Manifest:
        what = f"manifest {ref.name}{'@' if is_digest(target) else ':'}{target}"
        resp = self._get(ref, f"manifests/{target}", what, MAX_MANIFEST_BYTES, accept=ACCEPT)
        if resp.status != 200:
            raise self._status_error(resp, ref, what)
        digest = compute_digest(resp.body)
        if is_digest(target) and digest != target:
            raise DigestMismatch(target, digest, what)
        announced = resp.header("Docker-Content-Digest")
        if announced and is_digest(announced) and announced != digest:
            raise DigestMismatch(announced, digest, what)
        try:
            body = json.loads(resp.body)
        except ValueError as e:
            raise ServerError(f"{what} is not JSON ({e})") from e
        if not isinstance(body, Mapping):
            raise ServerError(f"{what} is not a JSON object")
        media_type = body.get("mediaType") or resp.content_type
        if not isinstance(media_type, str) or media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
            if "manifests" in body:
                media_type = OCI_INDEX
            elif "layers" in body and body.get("schemaVersion") == 2:
                media_type = OCI_MANIFEST
        if media_type in DOCKER_SCHEMA1 or body.get("schemaVersion") == 1:
            raise Unsupported(
                f"{what} is a Docker schema 1 manifest, which wasmlet does not read; re-push it "
                "with a current client (OCI or Docker schema 2)"
            )
        if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
            raise Unsupported(
                f"{what} has media type {media_type!r}, not an image manifest or index"
            )
        return _Manifest(str(media_type), digest, body)

    # -- HTTP and auth --------------------------------------------------------------------

    def _scheme(self) -> str:
        return "http" if self.insecure else "https"

    def _get(
        self, ref: Reference, path: str, what: str, limit: int, accept: str | None = None
    ) -> transport.Response:
        url = f"{self._scheme()}://{ref.api_host}/v2/{ref.repository}/{path}"
        key = (ref.api_host, ref.repository)
        headers = {"Accept": accept} if accept else {}
        resp = self._send(url, what, limit, headers, self._auth.get(key))
        if resp.status != 401:
            return resp
        authorization = self._authorize(ref, resp, what)
        resp = self._send(url, what, limit, headers, authorization)
        if resp.status == 401:
            raise self._rejected(ref)
        self._auth[key] = authorization
        return resp

    def _send(
        self,
        url: str,
        what: str,
        limit: int,
        headers: Mapping[str, str],
        authorization: str | None,
    ) -> transport.Response:
        return transport.get(
            url,
            what=what,
            limit=limit,
            headers=headers,
            authorization=authorization,
            timeout=self.timeout,
            context=self._context,
            insecure_hint=(
                "the registry may speak plain HTTP: set spec.module.oci.insecure: true "
                "(only for a registry you trust on a private network or loopback)"
            ),
        )

    def _credentials(self, ref: Reference) -> Credentials | None:
        return self.docker_config.credentials_for(ref.registry) if self.docker_config else None

    def _authorize(self, ref: Reference, resp: transport.Response, what: str) -> str:
        headers = resp.headers.get_all("WWW-Authenticate") or []
        challenges = [parse_challenge(h) for h in headers]
        creds = self._credentials(ref)
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            return self._bearer_token(ref, bearer, creds)
        if any(c.scheme == "basic" for c in challenges):
            if creds is None:
                raise self._needs_credentials(ref)
            return creds.basic()
        raise Unauthorized(
            f"{ref.registry} answered 401 for {what} without a Basic or Bearer challenge "
            f"(WWW-Authenticate: {', '.join(headers) or 'missing'}); wasmlet cannot log in there"
        )

    def _bearer_token(self, ref: Reference, ch: Challenge, creds: Credentials | None) -> str:
        realm = ch.params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unauthorized(f"{ref.registry} sent a Bearer challenge with a bad realm {realm!r}")
        if parts.scheme == "http" and not (self.insecure or is_loopback_host(parts.hostname)):
            raise TLSError(
                f"{ref.registry}'s token service {realm} uses plain HTTP; wasmlet sends no "
                "credentials over it unless spec.module.oci.insecure is true"
            )
        query: list[tuple[str, str]] = []
        if "service" in ch.params:
            query.append(("service", ch.params["service"]))
        query.append(("scope", ch.params.get("scope") or f"repository:{ref.repository}:pull"))
        if creds is not None:
            query.append(("account", creds.username))
        sep = "&" if parts.query else "?"
        url = realm + sep + urllib.parse.urlencode(query)
        resp = transport.get(
            url,
            what=f"a pull token for {ref.name}",
            limit=MAX_MANIFEST_BYTES,
            authorization=creds.basic() if creds else None,
            timeout=self.timeout,
            context=self._context,
        )
        if resp.status in (401, 403):
            raise self._rejected(ref) if creds else self._needs_credentials(ref)
        if resp.status != 200:
            raise ServerError(
                f"token service {realm} answered {resp.status} for {ref.name}; the agent retries"
            )
        try:
            body = json.loads(resp.body)
        except ValueError as e:
            raise ServerError(f"token service {realm} did not answer JSON ({e})") from e
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ServerError(f"token service {realm} answered without a token")
        return f"Bearer {token}"

    def _needs_credentials(self, ref: Reference) -> Unauthorized:
        return Unauthorized(
            f"{ref.registry} requires credentials to pull {ref.repository}: set "
            "spec.module.oci.pullSecret to a kubernetes.io/dockerconfigjson Secret with an entry "
            f"for {ref.registry}"
        )

    def _rejected(self, ref: Reference) -> Unauthorized:
        if self._credentials(ref) is None:
            return self._needs_credentials(ref)
        return Unauthorized(
            f"{ref.registry} rejected the credentials for {ref.repository} from the pull secret; "
            "check the username and password (or token) in the Secret"
        )

    def _status_error(
        self, resp: transport.Response, ref: Reference, what: str, blob: str | None = None
    ) -> SourceError:
        codes, messages = _registry_errors(resp.body)
        if resp.status == 404:
            if "NAME_UNKNOWN" in codes:
                return NotFound(
                    f"repository {ref.repository} not found on {ref.registry}; check the "
                    "reference in spec.module.oci.reference (or push the module)"
                )
            if blob is not None:
                return NotFound(f"{what} not found: the registry lost a blob its manifest names")
            tags = self._tags(ref)
            if tags is None:
                return NotFound(
                    f"repository {ref.repository} not found on {ref.registry}; check the "
                    "reference in spec.module.oci.reference (or push the module)"
                )
            kind = "digest" if ref.pinned else "tag"
            known = f" (tags there: {', '.join(tags)})" if tags else ""
            return NotFound(
                f"{kind} {ref.target} not found in {ref.name}{known}; check the {kind} in "
                "spec.module.oci.reference (or push it)"
            )
        if resp.status == 403:
            return Unauthorized(
                f"{ref.registry} denied pulling {ref.repository}"
                + (f" ({'; '.join(messages)})" if messages else "")
                + ": the pull secret's account needs read access to the repository"
            )
        if resp.status == 400 and b"HTTPS server" in resp.body:
            return TLSError(
                f"{ref.registry} speaks HTTPS but spec.module.oci.insecure is true; unset it"
            )
        if resp.status == 429:
            return ServerError(
                f"{ref.registry} is rate limiting pulls of {what}; the agent retries"
            )
        detail = "; ".join(messages) or resp.body[:200].decode("utf-8", "replace").strip()
        return ServerError(
            f"{ref.registry} answered {resp.status} for {what}"
            + (f": {detail}" if detail else "")
            + "; the agent retries with back-off"
        )

    def _tags(self, ref: Reference) -> list[str] | None:
        """Some tags of the repository, or None if the registry says it does not exist."""
        try:
            resp = self._get(ref, "tags/list?n=10", f"tags of {ref.name}", MAX_MANIFEST_BYTES)
        except SourceError:
            return []
        if resp.status == 404 and "NAME_UNKNOWN" in _registry_errors(resp.body)[0]:
            return None
        try:
            tags = json.loads(resp.body).get("tags") if resp.status == 200 else []
        except (ValueError, AttributeError):
            return []
        return [str(t) for t in tags[:10]] if isinstance(tags, list) else []

    # -- image layers ---------------------------------------------------------------------

    def _layer_limit(self) -> int:
        # A tar layer carries headers and maybe other files besides the module.
        return self.max_module_bytes + 16 * 1024 * 1024

    def _extract(self, resolved: ResolvedModule, blob: bytes) -> tuple[str, bytes]:
        ref = resolved.reference
        where = f"layer {resolved.layer.digest} of {ref.name}@{resolved.manifest_digest}"
        if blob[:4] == _ZSTD_MAGIC:
            raise Unsupported(
                f"{where} is zstd-compressed, which the agent cannot read; push it with gzip "
                "(or as a Wasm OCI artifact)"
            )
        # Decompression is bounded: a small gzip bomb must not fill memory.
        budget = 2 * self._layer_limit()
        files = _wasm_files(blob, budget, self.max_module_bytes, where)
        if not files:
            raise NoWasmLayer(
                f"{where} holds no .wasm file; build the image FROM scratch with the module "
                "COPY'd in, or push it as a Wasm OCI artifact"
            )
        if len(files) == 1:
            return files[0]
        entry = self._entrypoint(resolved)
        for name, data in files:
            if entry is not None and _norm_path(name) == entry:
                return name, data
        names = ", ".join(name for name, _ in files)
        raise NoWasmLayer(
            f"{where} holds several .wasm files ({names}) and the image's entrypoint names none "
            "of them; keep one module per image or set ENTRYPOINT to the module's path"
        )

    def _entrypoint(self, resolved: ResolvedModule) -> str | None:
        config = resolved.config
        if config is None or config.size > MAX_MANIFEST_BYTES:
            return None
        try:
            body = json.loads(self.fetch_blob(resolved.reference, config.digest, config.size))
        except ValueError:
            return None
        inner = body.get("config") if isinstance(body, dict) else None
        if not isinstance(inner, dict):
            return None
        for key in ("Entrypoint", "Cmd"):
            argv = inner.get(key)
            if isinstance(argv, list) and argv and isinstance(argv[0], str):
                return _norm_path(argv[0])
        return None


def pull(
    reference: str,
    *,
    docker_config: DockerConfig | Mapping[str, Any] | None = None,
    insecure: bool = False,
    expected_digest: str | None = None,
    timeout: float = 30.0,
    max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
    ca_file: str | None = None,
) -> ModuleBytes:
    """One-shot pull: the module bytes `reference` names, verified."""
    if docker_config is not None and not isinstance(docker_config, DockerConfig):
        docker_config = DockerConfig.parse(docker_config)
    client = OciClient(
        docker_config=docker_config,
        insecure=insecure,
        timeout=timeout,
        max_module_bytes=max_module_bytes,
        ca_file=ca_file,
    )
    return client.pull(reference, expected_digest=expected_digest)


# ---------------------------------------------------------------------------------------------
# Pure helpers


def _registry_errors(body: bytes) -> tuple[set[str], list[str]]:
    try:
        errors = json.loads(body).get("errors", [])
    except (ValueError, AttributeError):
        return set(), []
    codes: set[str] = set()
    messages: list[str] = []
    for e in errors if isinstance(errors, list) else []:
        if isinstance(e, dict):
            codes.add(str(e.get("code", "")))
            if e.get("message"):
                messages.append(str(e["message"]))
    return codes, messages


def _platform_name(desc: Descriptor) -> str:
    p = desc.platform or {}
    return f"{p.get('os', '?')}/{p.get('architecture', '?')}"


def _pick_platform(index: _Manifest, ref: Reference) -> Descriptor:
    entries = index.body.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise NoWasmLayer(f"index {ref.name}@{index.digest} lists no manifests")
    where = f"index {ref.name}@{index.digest}"
    descs = [Descriptor.parse(e, where) for e in entries]
    for d in descs:
        p = d.platform or {}
        arch, os_ = str(p.get("architecture", "")), str(p.get("os", ""))
        if arch in WASM_ARCHITECTURES or os_.startswith("wasi"):
            return d
    if len(descs) == 1 and descs[0].platform is None:
        return descs[0]
    found = ", ".join(sorted({_platform_name(d) for d in descs}))
    raise NoWasmLayer(
        f"{ref} has no wasi/wasm platform (found {found}); build the module for wasi/wasm "
        "(e.g. docker buildx --platform wasi/wasm) or push it as a Wasm OCI artifact"
    )


def _pick_layer(manifest: _Manifest, ref: Reference) -> tuple[Descriptor, bool, Descriptor | None]:
    where = f"manifest {ref.name}@{manifest.digest}"
    key = "blobs" if manifest.media_type == OCI_ARTIFACT_MANIFEST else "layers"
    raw_layers = manifest.body.get(key)
    layers = (
        [Descriptor.parse(x, where) for x in raw_layers or []]
        if isinstance(raw_layers, list)
        else []
    )
    raw_config = manifest.body.get("config")
    config = Descriptor.parse(raw_config, where) if isinstance(raw_config, Mapping) else None

    wasm = [d for d in layers if d.media_type in WASM_LAYER_TYPES]
    if len(wasm) == 1:
        return wasm[0], True, config
    if len(wasm) > 1:
        names = ", ".join(d.title or d.digest for d in wasm)
        raise NoWasmLayer(
            f"{where} has {len(wasm)} Wasm layers ({names}); wasmlet runs one module per "
            "artifact — push each module under its own reference"
        )
    tars = [d for d in layers if d.media_type in TAR_LAYER_TYPES]
    if len(layers) == 1 and tars:
        return tars[0], False, config
    found = ", ".join(d.media_type for d in layers) or "no layers"
    config_type = config.media_type if config else "none"
    if len(tars) > 1:
        raise NoWasmLayer(
            f"{where} has {len(layers)} layers ({found}); wasmlet reads single-layer images "
            "only — build FROM scratch with one COPY of the .wasm, or push a Wasm OCI artifact"
        )
    raise NoWasmLayer(
        f"{where} has no Wasm layer (layer media types: {found}; config: {config_type}); push "
        f"the module as a Wasm OCI artifact (layer {WASM_LAYER}, config {WASM_CONFIG}) or as a "
        "single-layer image containing one .wasm file"
    )


def _norm_path(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


class _Budget(io.RawIOBase):
    """Reads through `read`, failing once more than `limit` bytes came out."""

    def __init__(self, read: Callable[[int], bytes], limit: int, where: str) -> None:
        self._read, self._left, self._where = read, limit, where

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b)
        data = self._read(len(view))
        self._left -= len(data)
        if self._left < 0:
            raise TooLarge(f"{self._where} unpacks to more than the agent's limit")
        view[: len(data)] = data
        return len(data)


def _wasm_files(blob: bytes, budget: int, max_file: int, where: str) -> list[tuple[str, bytes]]:
    """Regular files named *.wasm in a (gzip-compressed or plain) tar layer."""
    read: Callable[[int], bytes] = io.BytesIO(blob).read
    if blob[:2] == _GZIP_MAGIC:
        read = gzip.GzipFile(fileobj=io.BytesIO(blob), mode="rb").read
    stream = io.BufferedReader(_Budget(read, budget, where))
    found: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isreg() or not member.name.lower().endswith(".wasm"):
                    continue
                name = _norm_path(member.name)
                check_size(member.size, max_file, f"{name} in {where}")
                f = tar.extractfile(member)
                if f is not None:
                    found.append((name, f.read()))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise Unsupported(
            f"{where} is neither a .wasm file nor a readable tar(.gz) archive ({e}); push the "
            "module as a Wasm OCI artifact"
        ) from e
    return found
