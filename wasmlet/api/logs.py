"""The instance-log contract between the agent API and `wasmlet logs`: query, line format, times.

    GET /logs/NS/APP?tail=N&since=S&timestamps=true&follow=true&instance=I&prefix=true

`since` is seconds before now (on the agent's clock, like the kubelet's `sinceSeconds`) or an
RFC 3339 time. A line on the wire is `[instance] <RFC3339Nano> text`: the prefix when asked
(`prefix=true`) or when several instances answer, the time with `timestamps=true`, in the order
and spelling `kubectl logs --prefix --timestamps` uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE
)


class LogQueryError(ValueError):
    """A query parameter the agent cannot use; the message names it and the fix."""


def format_timestamp(time_ns: int) -> str:
    """RFC3339Nano in UTC with all nine digits (`2026-12-01T11:36:07.123456789Z`): the time
    column of CRI log files and of `--timestamps`; fixed width, so it sorts as text."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


def parse_timestamp(text: str) -> int:
    """An RFC 3339 time (any fraction up to nanoseconds, Z or an offset) as Unix nanoseconds.
    ValueError if it is not one."""
    m = _RFC3339.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time like 2026-12-01T11:00:00Z")
    whole, fraction, zone = m.groups()
    stamp = datetime.fromisoformat(whole + ("+00:00" if zone.upper() == "Z" else zone))
    nanos = int((fraction or "").ljust(9, "0"))
    return int(stamp.timestamp()) * 1_000_000_000 + nanos


def parse_duration(text: str) -> float:
    """A Go-style duration as kubectl's `--since` takes it (`30s`, `5m`, `1h30m`) in seconds."""
    raw = text.strip()
    parts = _DURATION.findall(raw)
    if not raw or "".join(n + u for n, u in parts) != raw:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _flag(query: Mapping[str, str], name: str) -> bool:
    raw = query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise LogQueryError(f"{name}={query[name]!r}: must be true or false")
    return raw in ("true", "1", "")


@dataclass(frozen=True)
class LogQuery:
    tail: int
    since_ns: int | None  # lines completed before this Unix time (ns) are left out
    timestamps: bool
    follow: bool
    prefix: bool
    instance: str | None


def parse_query(
    query: Mapping[str, str], now_ns: int, default_tail: int, max_tail: int
) -> LogQuery:
    """The /logs query as values; LogQueryError names the parameter and what it takes."""
    raw_tail = query.get("tail")
    try:
        tail = default_tail if raw_tail is None else int(raw_tail)
    except ValueError:
        raise LogQueryError(f"tail={raw_tail!r}: must be an integer (lines per instance)") from None
    if tail < 0:  # kubectl's --tail=-1: every line kept
        tail = max_tail
    since_ns = None
    raw_since = query.get("since")
    if raw_since:
        try:
            since_ns = now_ns - int(float(raw_since) * 1e9)
        except (ValueError, OverflowError):
            try:
                since_ns = parse_timestamp(raw_since)
            except ValueError:
                raise LogQueryError(
                    f"since={raw_since!r}: must be seconds before now (300) or an RFC 3339 "
                    "time (2026-12-01T11:00:00Z)"
                ) from None
    return LogQuery(
        tail=min(tail, max_tail),
        since_ns=since_ns,
        timestamps=_flag(query, "timestamps"),
        follow=_flag(query, "follow"),
        prefix=_flag(query, "prefix"),
        instance=query.get("instance") or None,
    )


def render_line(text: str, time_ns: int, *, timestamps: bool, prefix: str | None) -> str:
    """One line as `kubectl logs --prefix --timestamps` prints it (without its newline)."""
    head = f"[{prefix}] " if prefix is not None else ""
    stamp = f"{format_timestamp(time_ns)} " if timestamps else ""
    return f"{head}{stamp}{text}"


@dataclass(frozen=True)
class WireLine:
    instance: str
    time_ns: int
    text: str


def parse_wire_line(line: str) -> WireLine | None:
    """A line the agent sent with prefix=true and timestamps=true; None if it is not one."""
    if not line.startswith("["):
        return None
    instance, sep, rest = line[1:].partition("] ")
    stamp, _, text = rest.partition(" ")
    if not sep or not instance:
        return None
    try:
        time_ns = parse_timestamp(stamp)
    except ValueError:
        return None
    return WireLine(instance, time_ns, text)
