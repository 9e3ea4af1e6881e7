"""The logs contract shared by the agent API and `wasmlet logs`: times, durations, the query,
the line format (wasmlet/api/logs.py)."""

from __future__ import annotations

import pytest

from wasmlet.api.logs import (
    LogQueryError,
    format_timestamp,
    parse_duration,
    parse_query,
    parse_timestamp,
    parse_wire_line,
    render_line,
)

NOW = 1_764_590_400_123_456_789  # 2025-12-01T12:00:00.123456789Z


def test_timestamps_round_trip_at_nanoseconds() -> None:
    assert format_timestamp(NOW) == "2025-12-01T12:00:00.123456789Z"
    assert parse_timestamp("2025-12-01T12:00:00.123456789Z") == NOW
    assert parse_timestamp("2025-12-01T13:00:00.5+01:00") == NOW - 123_456_789 + 500_000_000
    assert parse_timestamp("2025-12-01T12:00:00Z") == NOW - 123_456_789
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        parse_timestamp("yesterday")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1.5s", 1.5), ("250ms", 0.25)]
)
def test_durations_as_kubectl_takes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "5m junk"])
def test_bad_durations_say_what_a_duration_is(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration like 30s, 5m or 1h30m"):
        parse_duration(text)


def test_query_since_in_seconds_or_rfc3339() -> None:
    q = parse_query({"since": "300"}, NOW, 100, 10_000)
    assert q.since_ns == NOW - 300 * 10**9 and q.tail == 100 and not q.follow
    q = parse_query({"since": "2025-12-01T11:00:00Z", "follow": "true", "timestamps": "1"},
                    NOW, 100, 10_000)  # fmt: skip
    assert q.since_ns == NOW - 123_456_789 - 3600 * 10**9 and q.follow and q.timestamps
    assert parse_query({"tail": "-1"}, NOW, 100, 10_000).tail == 10_000
    for bad, name in (({"since": "soon"}, "since="), ({"follow": "yes"}, "follow="),
                      ({"tail": "x"}, "tail=")):  # fmt: skip
        with pytest.raises(LogQueryError, match=name):
            parse_query(bad, NOW, 100, 10_000)


def test_line_format_is_kubectls_and_parses_back() -> None:
    line = render_line("tick 1", NOW, timestamps=True, prefix="web-0")
    assert line == "[web-0] 2025-12-01T12:00:00.123456789Z tick 1"
    assert render_line("tick 1", NOW, timestamps=False, prefix=None) == "tick 1"
    w = parse_wire_line(line)
    assert w is not None and (w.instance, w.time_ns, w.text) == ("web-0", NOW, "tick 1")
    assert parse_wire_line("[web-0] not-a-time x") is None
    assert parse_wire_line("tick 1") is None
