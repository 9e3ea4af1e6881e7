"""A revision names what instances run; changing it rolls instances over, scaling does not."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Fields that do not change what an instance is: changing them never replaces instances.
_NOT_IN_TEMPLATE = frozenset({"replicas", "nodeSelector", "strategy", "progressDeadlineSeconds"})


def template_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a WasmApp spec that the agents run."""
    return {k: v for k, v in spec.items() if k not in _NOT_IN_TEMPLATE}


def revision_of(spec: Mapping[str, Any]) -> str:
    """A short stable hash of the template (key order does not matter)."""
    canonical = json.dumps(template_of(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
