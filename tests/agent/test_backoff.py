"""Back-off maths: base, doubling, cap, reset after a long enough run."""

from __future__ import annotations

import pytest

from wasmlet_agent.backoff import Backoff, next_delay


@pytest.mark.parametrize(
    ("restarts", "expected"),
    [(0, 10), (1, 20), (2, 40), (3, 80), (4, 160), (5, 300), (6, 300), (10_000, 300)],
)
def test_kubelet_defaults_double_to_cap(restarts: int, expected: float) -> None:
    assert next_delay(restarts, base=10, cap=300) == expected


def test_zero_base_means_no_wait() -> None:
    assert next_delay(3, base=0, cap=300) == 0


def test_negative_restarts_rejected() -> None:
    with pytest.raises(ValueError):
        next_delay(-1, 10, 300)


def test_backoff_grows_then_resets_after_a_long_run() -> None:
    b = Backoff(base=1, cap=8)
    assert [b.on_exit(ran_for=0.1) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert b.on_exit(ran_for=16) == 1  # stayed up for twice the cap: start over
    assert b.on_exit(ran_for=0.1) == 2


@pytest.mark.parametrize(
    ("policy", "succeeded", "expected"),
    [
        ("Always", True, "Restart"),
        ("Always", False, "Restart"),
        ("OnFailure", True, "Complete"),
        ("OnFailure", False, "Restart"),
        ("Never", True, "Complete"),
        ("Never", False, "Fail"),
    ],
)
def test_after_exit_follows_restart_policy(policy: str, succeeded: bool, expected: str) -> None:
    from wasmlet.api.constants import RestartPolicy
    from wasmlet_agent.restarts import after_exit

    assert after_exit(RestartPolicy(policy), succeeded).value == expected
