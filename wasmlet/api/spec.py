"""The WasmApp spec as typed, immutable Python values, parsed from the API object.

crds/wasmlet.dev_wasmapps.yaml is the source of truth: every field here maps to a schema
property by camelCase name, and every default here equals the schema's default
(tests/api/test_schema_drift.py fails if they drift). The API server applies the CEL rules
before anything reaches the operator or an agent; parse_spec() re-checks only what the
agent's standalone mode (no API server) needs to refuse bad manifests safely.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasmlet.api.constants import MAX_MEMORY_BYTES, Mode, RestartPolicy

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PERCENT_RE = re.compile(r"^[0-9]+%$")
# The shortest restart back-off: any positive floor ends a zero-delay crash loop (delays double).
MIN_BACKOFF_SECONDS = 0.1
QUANTITY_RE = re.compile(r"^([0-9]+)(Ki|Mi|Gi)?$")
_SUFFIX = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


class SpecError(ValueError):
    """A manifest the agent refuses; the message names the field and the fix."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def parse_quantity(value: str, path: str) -> int:
    """Bytes of a binary quantity such as 64Mi (the only suffixes the schema allows)."""
    m = QUANTITY_RE.match(value)
    if not m:
        raise SpecError(path, f"{value!r} is not a quantity like 64Mi (suffixes Ki, Mi, Gi)")
    return int(m.group(1)) * _SUFFIX[m.group(2)]


@dataclass(frozen=True)
class OciSource:
    reference: str
    pull_secret: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class HttpSource:
    url: str


@dataclass(frozen=True)
class ConfigMapSource:
    name: str
    key: str


@dataclass(frozen=True)
class ModuleSpec:
    oci: OciSource | None = None
    http: HttpSource | None = None
    config_map: ConfigMapSource | None = None
    digest: str | None = None

    def describe(self) -> str:
        """A short human name of the source, e.g. for kubectl get."""
        if self.oci:
            return self.oci.reference
        if self.http:
            return self.http.url
        assert self.config_map is not None
        return f"configmap:{self.config_map.name}/{self.config_map.key}"


@dataclass(frozen=True)
class KeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class EnvVarSource:
    config_map_key_ref: KeyRef | None = None
    secret_key_ref: KeyRef | None = None


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


@dataclass(frozen=True)
class EmptyDirVolume:
    size_limit: str | None = None


@dataclass(frozen=True)
class ConfigMapVolume:
    name: str


@dataclass(frozen=True)
class SecretVolume:
    secret_name: str


@dataclass(frozen=True)
class HostPathVolume:
    path: str


@dataclass(frozen=True)
class Volume:
    name: str
    empty_dir: EmptyDirVolume | None = None
    config_map: ConfigMapVolume | None = None
    secret: SecretVolume | None = None
    host_path: HostPathVolume | None = None

    def writable_by_default(self) -> bool:
        return self.empty_dir is not None


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool | None = None


@dataclass(frozen=True)
class ReadinessCheck:
    """spec.http.readinessCheck: a GET the agent makes itself, like an httpGet readinessProbe."""

    path: str = "/"
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    initial_delay_seconds: int = 0


@dataclass(frozen=True)
class HttpSpec:
    port: int = 8080
    readiness_check: ReadinessCheck | None = None


@dataclass(frozen=True)
class NetworkSpec:
    outbound: bool = False


@dataclass(frozen=True)
class Limits:
    memory: str = "64Mi"
    timeout_seconds: int = 0
    request_timeout_seconds: int = 10
    fuel: int | None = None
    # Placement reserves memory x max_concurrency per node for an http app (footprint.py):
    # 16 keeps a default app at 1Gi per node (64 reserved 4Gi, half of a default node), and
    # a CPU-bound guest gains nothing from more instances at once than the node has cores.
    max_concurrency: int = 16

    @property
    def memory_bytes(self) -> int:
        return parse_quantity(self.memory, "spec.limits.memory")


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float = 10
    max_seconds: float = 300


@dataclass(frozen=True)
class Strategy:
    max_unavailable: int | str = "25%"


@dataclass(frozen=True)
class WasmAppSpec:
    module: ModuleSpec
    replicas: int = 1
    mode: Mode = Mode.COMMAND
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    volumes: tuple[Volume, ...] = ()
    volume_mounts: tuple[VolumeMount, ...] = ()
    http: HttpSpec | None = None
    network: NetworkSpec = field(default_factory=NetworkSpec)
    limits: Limits = field(default_factory=Limits)
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    backoff: Backoff = field(default_factory=Backoff)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    strategy: Strategy = field(default_factory=Strategy)
    progress_deadline_seconds: int = 600


def camel(name: str) -> str:
    """The schema's property name of a dataclass field (config_map -> configMap)."""
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


# --- parsing -------------------------------------------------------------------------------


def _build(cls: type[Any], raw: Any, path: str) -> Any:
    """Build dataclass cls from a dict, checking types and refusing unknown fields."""
    if not isinstance(raw, Mapping):
        raise SpecError(path, f"must be an object, got {type(raw).__name__}")
    fields = {camel(f.name): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SpecError(f"{path}.{unknown[0]}", f"unknown field (known: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        sub = f"{path}.{key}"
        if key not in raw or raw[key] is None:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(sub, "is required")
            continue
        kwargs[f.name] = _convert(f.type, raw[key], sub)
    return cls(**kwargs)


_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
}

_CLASSES: dict[str, type[Any]] = {}


def _convert(annotation: Any, value: Any, path: str) -> Any:
    text = str(annotation).replace(" ", "")
    options = [t for t in text.split("|") if t != "None"]
    if len(options) > 1:  # int | str (IntOrString)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise SpecError(path, "must be an integer or a percent string like 25%")
        return value
    t = options[0]
    if t in _SCALARS:
        ok = isinstance(value, _SCALARS[t]) and not (t != "bool" and isinstance(value, bool))
        if not ok:
            raise SpecError(path, f"must be of type {t}, got {type(value).__name__}")
        return value
    if t == "Mode":
        return _enum(Mode, value, path)
    if t == "RestartPolicy":
        return _enum(RestartPolicy, value, path)
    if t.startswith("tuple[") and t.endswith(",...]"):
        inner = t[len("tuple[") : -len(",...]")]
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise SpecError(path, "must be a list")
        return tuple(_convert(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if t.startswith("Mapping[str,str]"):
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise SpecError(path, "must be a map of strings to strings")
        return dict(value)
    return _build(_CLASSES[t], value, path)


def _enum(enum: type[Mode] | type[RestartPolicy], value: Any, path: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise SpecError(path, f"{value!r} is not one of {allowed}") from None


for _cls in (
    OciSource,
    HttpSource,
    ConfigMapSource,
    ModuleSpec,
    KeyRef,
    EnvVarSource,
    EnvVar,
    EmptyDirVolume,
    ConfigMapVolume,
    SecretVolume,
    HostPathVolume,
    Volume,
    VolumeMount,
    ReadinessCheck,
    HttpSpec,
    NetworkSpec,
    Limits,
    Backoff,
    Strategy,
    WasmAppSpec,
):
    _CLASSES[_cls.__name__] = _cls


def _one_of(path: str, names: Sequence[str], present: Sequence[bool]) -> None:
    if sum(present) != 1:
        raise SpecError(path, f"set exactly one of {', '.join(names)}")


def parse_spec(raw: Mapping[str, Any]) -> WasmAppSpec:
    """Parse and check a WasmApp spec dict; raises SpecError naming the field."""
    spec: WasmAppSpec = _build(WasmAppSpec, raw, "spec")
    m = spec.module
    _one_of(
        "spec.module",
        ("oci", "http", "configMap"),
        (m.oci is not None, m.http is not None, m.config_map is not None),
    )
    if m.digest is not None and not DIGEST_RE.match(m.digest):
        raise SpecError("spec.module.digest", "must be sha256: followed by 64 lowercase hex digits")
    if m.http is not None and m.digest is None:
        raise SpecError("spec.module.digest", "is required for an http source")
    if not 0 <= spec.replicas <= 1000:
        raise SpecError("spec.replicas", "must be between 0 and 1000")
    if spec.mode is Mode.HTTP and spec.http is None:
        spec = dataclasses.replace(spec, http=HttpSpec())
    if spec.http is not None and not 1 <= spec.http.port <= 65535:
        raise SpecError("spec.http.port", "must be between 1 and 65535")
    _check_bounds(spec)
    for i, env in enumerate(spec.env):
        _one_of(
            f"spec.env[{i}]",
            ("value", "valueFrom"),
            (env.value is not None, env.value_from is not None),
        )
    declared = set()
    for i, vol in enumerate(spec.volumes):
        _one_of(
            f"spec.volumes[{i}]",
            ("emptyDir", "configMap", "secret", "hostPath"),
            (
                vol.empty_dir is not None,
                vol.config_map is not None,
                vol.secret is not None,
                vol.host_path is not None,
            ),
        )
        if vol.host_path is not None and not vol.host_path.path.startswith("/"):
            raise SpecError(f"spec.volumes[{i}].hostPath.path", "must be absolute")
        if len(vol.name) > 63 or not DNS_LABEL_RE.match(vol.name):
            raise SpecError(
                f"spec.volumes[{i}].name",
                f"{vol.name!r} must be a DNS label: at most 63 lowercase letters, digits and '-'",
            )
        if vol.name in declared:
            raise SpecError(f"spec.volumes[{i}].name", f"duplicate volume name {vol.name!r}")
        declared.add(vol.name)
    seen = set()
    for i, mount in enumerate(spec.volume_mounts):
        where = f"spec.volumeMounts[{i}]"
        if not mount.mount_path.startswith("/") or ".." in mount.mount_path.split("/"):
            raise SpecError(f"{where}.mountPath", "must be absolute and must not contain '..'")
        if mount.mount_path in seen:
            raise SpecError(f"{where}.mountPath", f"duplicate mount path {mount.mount_path}")
        seen.add(mount.mount_path)
        if mount.name not in declared:
            raise SpecError(f"{where}.name", f"no volume named {mount.name!r} in spec.volumes")
    return spec


def _range(path: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SpecError(path, f"{value} must be {bound}")


def deadline_message(initial_seconds: float) -> str:
    """Why a progress deadline must outlast the first restart delay, and the fix."""
    return (
        f"must be greater than spec.backoff.initialSeconds ({initial_seconds:g}): a failed start "
        "is retried after that delay, so a shorter deadline declares a rollout stuck before "
        "its first retry; raise progressDeadlineSeconds or lower backoff.initialSeconds"
    )


def _check_bounds(spec: WasmAppSpec) -> None:
    """The CRD's minimum/maximum/pattern rules, for `wasmlet run` where no API server checks."""
    lim = spec.limits
    memory = lim.memory_bytes
    if memory > MAX_MEMORY_BYTES:
        raise SpecError("spec.limits.memory", "must be at most 4Gi")
    if memory < 64 * 1024:
        raise SpecError("spec.limits.memory", "must be at least 64Ki (one Wasm page)")
    _range("spec.limits.timeoutSeconds", lim.timeout_seconds, 0, 86400)
    _range("spec.limits.requestTimeoutSeconds", lim.request_timeout_seconds, 1, 600)
    _range("spec.limits.maxConcurrency", lim.max_concurrency, 1, 10000)
    if lim.fuel is not None:
        _range("spec.limits.fuel", lim.fuel, 1)
    b = spec.backoff
    _range("spec.backoff.initialSeconds", b.initial_seconds, MIN_BACKOFF_SECONDS, 3600)
    _range("spec.backoff.maxSeconds", b.max_seconds, MIN_BACKOFF_SECONDS, 86400)
    if b.initial_seconds > b.max_seconds:
        raise SpecError("spec.backoff", "initialSeconds must not exceed maxSeconds")
    _range("spec.progressDeadlineSeconds", spec.progress_deadline_seconds, 1)
    if spec.progress_deadline_seconds <= b.initial_seconds:
        raise SpecError("spec.progressDeadlineSeconds", deadline_message(b.initial_seconds))
    mu = spec.strategy.max_unavailable
    if (isinstance(mu, int) and mu < 0) or (isinstance(mu, str) and not PERCENT_RE.match(mu)):
        raise SpecError(
            "spec.strategy.maxUnavailable", "must be a non-negative integer or a percentage"
        )
    if spec.mode is Mode.HTTP and spec.restart_policy is not RestartPolicy.ALWAYS:
        raise SpecError("spec.restartPolicy", "must be Always when spec.mode is http")
    if spec.mode is not Mode.HTTP and spec.http is not None:
        raise SpecError("spec.http", "only valid when spec.mode is http")
    if spec.http is not None and spec.http.readiness_check is not None:
        _check_readiness(spec.http.readiness_check)
    for i, env in enumerate(spec.env):
        if not env.name or "=" in env.name:
            raise SpecError(f"spec.env[{i}].name", "must be non-empty and must not contain '='")


# What the CRD's [[:space:][:cntrl:]] refuses: a request line cannot carry them.
_BAD_PATH_CHAR = re.compile(r"[ \x00-\x1f\x7f]")


def _check_readiness(check: ReadinessCheck) -> None:
    where = "spec.http.readinessCheck"
    if not check.path.startswith("/"):
        raise SpecError(f"{where}.path", "must start with / (a path on the app, such as /healthz)")
    if len(check.path) > 1024:
        raise SpecError(f"{where}.path", "must be at most 1024 characters")
    if _BAD_PATH_CHAR.search(check.path):
        raise SpecError(
            f"{where}.path", "must not contain spaces or control characters (percent-encode them)"
        )
    _range(f"{where}.periodSeconds", check.period_seconds, 1, 3600)
    _range(f"{where}.timeoutSeconds", check.timeout_seconds, 1, 600)
    _range(f"{where}.successThreshold", check.success_threshold, 1, 100)
    _range(f"{where}.failureThreshold", check.failure_threshold, 1, 100)
    _range(f"{where}.initialDelaySeconds", check.initial_delay_seconds, 0, 3600)
