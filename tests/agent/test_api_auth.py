"""The agent API's authorization: path -> attributes, the decision cache, response bounds."""

from __future__ import annotations

import asyncio

import pytest

from wasmlet.api.logs import parse_query
from wasmlet_agent.api_auth import (
    MAX_LOG_BYTES,
    MAX_TAIL_LINES,
    Attributes,
    Decision,
    DecisionCache,
    Lookup,
    Verdict,
    attributes_for,
    bearer_token,
    cap_bytes,
)
from wasmlet_agent.cluster.api_guard import ApiUnreachable, Guard

LOG = Attributes(resource="wasmapps", subresource="log", namespace="team-a", name="victim")
PROXY = Attributes(resource="wasmnodes", subresource="proxy", name="n1")


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", Attributes(path="/metrics")),
        ("/logs/team-a/victim", LOG),
        ("/apps", PROXY),
        ("/logs/team-a", PROXY),  # not a log path: the broadest permission
        ("/logs//victim", PROXY),
        ("/logs/a/b/c", PROXY),
        ("/anything-new", PROXY),
        ("/healthz/", PROXY),
    ],
)
def test_attributes_for(path: str, want: Attributes | None) -> None:
    assert attributes_for(path, "n1") == want


@pytest.mark.parametrize(
    ("header", "want"),
    [(None, None), ("", None), ("Bearer abc", "abc"), ("bearer  abc ", "abc"),
     ("Basic abc", None), ("Bearer", None), ("Bearer ", None)],
)  # fmt: skip
def test_bearer_token(header: str | None, want: str | None) -> None:
    assert bearer_token(header) == want


def test_cache_ttls() -> None:
    c = DecisionCache(allow_ttl=30, deny_ttl=10, offline_reuse=300)
    c.put("t-allow", LOG, Decision(Verdict.ALLOW, "u", at=100))
    c.put("t-deny", LOG, Decision(Verdict.DENY, "u", at=100))
    assert c.lookup("t-allow", LOG, 129.9)[0] is Lookup.FRESH
    assert c.lookup("t-allow", LOG, 130.0)[0] is Lookup.STALE
    assert c.lookup("t-deny", LOG, 109.9)[0] is Lookup.FRESH
    assert c.lookup("t-deny", LOG, 110.0)[0] is Lookup.STALE
    assert c.lookup("t-allow", PROXY, 100)[0] is Lookup.MISSING  # per attributes
    assert c.lookup("other", LOG, 100) == (Lookup.MISSING, None)  # per token


def test_cache_offline_window() -> None:
    c = DecisionCache(offline_reuse=300)
    c.put("t", LOG, Decision(Verdict.ALLOW, "u", at=100))
    assert c.offline("t", LOG, 399.9) is not None
    assert c.offline("t", LOG, 400.0) is None
    assert c.offline("x", LOG, 100) is None


def test_cache_is_bounded_and_keeps_no_token() -> None:
    c = DecisionCache(size=3)
    for i in range(5):
        c.put(f"secret-token-{i}", LOG, Decision(Verdict.ALLOW, "u", at=0))
    assert len(c) == 3
    assert c.lookup("secret-token-0", LOG, 0)[0] is Lookup.MISSING
    assert c.lookup("secret-token-4", LOG, 0)[0] is Lookup.FRESH
    assert "secret-token" not in repr(c._items)


def test_bounds() -> None:
    def tail(raw: str | None) -> int:
        return parse_query({} if raw is None else {"tail": raw}, 0, 100, MAX_TAIL_LINES).tail

    assert tail(None) == 100
    assert tail("5") == 5
    assert tail("-1") == MAX_TAIL_LINES  # kubectl's --tail=-1: all (within the bound)
    assert tail(str(10**9)) == MAX_TAIL_LINES
    with pytest.raises(ValueError, match="tail='x': must be an integer"):
        tail("x")
    big = "".join(f"line {i}\n" for i in range(1_000_000))
    out = cap_bytes(big)
    assert len(out.encode()) <= MAX_LOG_BYTES and out.endswith("line 999999\n")
    assert out.startswith("line ")  # whole lines
    assert cap_bytes("short\n") == "short\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeReviewer:
    """Stands in for the API server's two reviews; the e2e tests use the real ones."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False
        self.answer = Verdict.ALLOW

    def __call__(self, token: str, attrs: Attributes) -> tuple[Verdict, str]:
        self.calls += 1
        if self.down:
            raise ApiUnreachable("connection refused")
        return self.answer, "alice"


def test_guard_caches_then_reuses_offline_then_refuses() -> None:
    clock, review = Clock(), FakeReviewer()
    offline = False
    guard = Guard("n1", review, offline=lambda: offline, clock=clock)

    def decide() -> Decision | None:
        return asyncio.run(guard.decide("tok", LOG))

    d = decide()
    assert d is not None and d.verdict is Verdict.ALLOW and review.calls == 1
    clock.now += 29
    assert decide() is not None and review.calls == 1  # fresh: not asked again
    clock.now += 2
    review.answer = Verdict.DENY
    d = decide()
    assert d is not None and d.verdict is Verdict.DENY and review.calls == 2  # stale: asked
    clock.now += 11
    review.answer = Verdict.ALLOW
    review.down = True
    d = decide()  # the API server fails: the recent deny still holds
    assert d is not None and d.verdict is Verdict.DENY and review.calls == 3
    offline = True  # known offline: not even asked
    clock.now += 200
    assert decide() is not None and review.calls == 3
    clock.now += 100  # past the offline window: refused
    assert decide() is None
    assert asyncio.run(guard.decide("never-seen", LOG)) is None


def test_recent_allows_survive_a_restart_within_the_offline_window() -> None:
    attrs = Attributes(resource="wasmnodes", subresource="proxy", name="n1")
    before = DecisionCache(offline_reuse=300)
    before.put("tok", attrs, Decision(Verdict.ALLOW, "observer", at=1000.0))
    before.put("bad", attrs, Decision(Verdict.DENY, "someone", at=1000.0))
    before.put("old", attrs, Decision(Verdict.ALLOW, "observer", at=600.0))
    records = before.to_records(now=1010.0, wall=50_010.0)
    assert [r["user"] for r in records] == ["observer"]  # no denies, nothing too old
    after = DecisionCache(offline_reuse=300)  # a new process: another monotonic clock
    assert after.load_records(records, now=5.0, wall=50_020.0) == 1
    kept = after.offline("tok", attrs, now=5.0)
    assert kept is not None and kept.verdict is Verdict.ALLOW
    assert after.offline("bad", attrs, now=5.0) is None
    # Past the window the same records are worthless.
    assert DecisionCache(offline_reuse=300).load_records(records, now=5.0, wall=50_400.0) == 0
