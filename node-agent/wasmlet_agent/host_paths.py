"""Which hostPaths an agent preopens for a guest: a pure check the agent makes whatever the API
admitted, because a guest acts with the agent's uid through its preopens.

Refused: anything that is, is under, or contains the agent's own directories (module cache,
instance volumes holding other tenants' projected Secrets) or /proc, /sys, /dev and the
service-account token directories; and anything that resolves (after symlinks) outside the
prefixes an administrator allows. With no allowed prefixes every hostPath is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Never preopened, nor any directory above them (mounting / would include /proc).
SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/var/run/secrets", "/run/secrets")

Resolve = Callable[[str], str]


@dataclass(frozen=True)
class HostPathPolicy:
    """What this agent allows: prefixes from flags, plus those listed in `prefixes_file` (the
    administrator's ConfigMap key, mounted; re-read at every check so edits apply)."""

    allowed_prefixes: tuple[str, ...] = ()
    agent_dirs: tuple[str, ...] = ()
    prefixes_file: Path | None = None

    def prefixes(self) -> tuple[str, ...]:
        if self.prefixes_file is None:
            return self.allowed_prefixes
        try:
            text = self.prefixes_file.read_text()
        except OSError:
            return self.allowed_prefixes
        return self.allowed_prefixes + parse_prefixes(text)


def parse_prefixes(text: str) -> tuple[str, ...]:
    """The ConfigMap's `allowedPrefixes`: one absolute path per line; blanks and #-comments
    are skipped (the admission policy reads the same format)."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(line for line in lines if line)


def _within(path: str, base: str) -> bool:
    """path is base or below it, component-wise (/data allows /data/x, not /database)."""
    base = base.rstrip("/") or "/"
    return path == base or path.startswith(base if base == "/" else base + "/")


def _overlaps(a: str, b: str) -> bool:
    return _within(a, b) or _within(b, a)


def check_host_path(
    path: str,
    allowed_prefixes: Sequence[str],
    agent_dirs: Sequence[str],
    resolve: Resolve = os.path.realpath,
) -> str | None:
    """Why `path` may not be preopened (naming the rule and the fix), or None if it may."""
    if not path.startswith("/"):
        return f"{path} must be absolute"
    if ".." in path.split("/"):
        return f"{path} must not contain '..'"
    real = resolve(path)
    shown = path if real == path else f"{path} (resolves to {real})"
    for candidate in dict.fromkeys((os.path.normpath(path), real)):
        for d in SYSTEM_DIRS:
            if _overlaps(candidate, d):
                return f"{shown} is or contains {d}, which no guest may mount"
        for d in agent_dirs:
            if _overlaps(candidate, resolve(d)):
                return f"{shown} is or contains the agent's own directory {d}"
    if not allowed_prefixes:
        return (
            f"{shown}: this node allows no hostPath; an administrator lists allowed prefixes "
            "in ConfigMap wasmlet-system/wasmlet-host-paths (key allowedPrefixes) or with the "
            "agent's --allowed-host-path-prefix"
        )
    if not any(_within(real, resolve(p)) for p in allowed_prefixes):
        return (
            f"{shown} is outside the prefixes this node allows ({', '.join(allowed_prefixes)}); "
            "use a directory under one of them"
        )
    return None
