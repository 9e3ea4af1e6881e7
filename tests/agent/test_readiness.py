"""The readiness-check state machine and result rules (pure, like the kubelet's prober)."""

from __future__ import annotations

import pytest

from wasmlet.api.spec import ReadinessCheck
from wasmlet_agent.readiness import (
    CheckResult,
    Readiness,
    observe,
    result_of,
    split_target,
)

PASS = CheckResult(True, "GET /healthz answered 200")
FAIL = CheckResult(False, "GET /healthz answered 500")


def run(results: str, success: int = 1, failure: int = 3) -> list[bool]:
    """Readiness after each result; results is a string of P (pass) and F (fail)."""
    check = ReadinessCheck(success_threshold=success, failure_threshold=failure)
    state, seen = Readiness(), []
    for r in results:
        state = observe(state, check, PASS if r == "P" else FAIL)
        seen.append(state.ready)
    return seen


@pytest.mark.parametrize(
    ("results", "success", "failure", "expected"),
    [
        # Not ready before the first result; one pass is enough with successThreshold 1.
        ("P", 1, 3, "1"),
        # Failures before any pass keep it not ready, however few.
        ("FP", 1, 3, "01"),
        # successThreshold counts passes in a row: a failure starts the count again.
        ("PPFPPP", 3, 3, "000001"),
        # Ready survives failureThreshold - 1 failures in a row...
        ("PFFP", 1, 3, "1111"),
        # ...and the failureThreshold-th makes it not ready.
        ("PFFF", 1, 3, "1110"),
        # A pass in between resets the failure count.
        ("PFFPFF", 1, 3, "111111"),
        # Back to ready needs successThreshold passes again.
        ("PFPP", 2, 1, "0001"),
        ("PPFPP", 2, 1, "01001"),
        # failureThreshold 1: one failure is enough.
        ("PF", 1, 1, "10"),
    ],
)
def test_thresholds(results: str, success: int, failure: int, expected: str) -> None:
    assert run(results, success, failure) == [c == "1" for c in expected]


def test_initial_state_reports_no_failure_until_a_check_failed() -> None:
    check = ReadinessCheck()
    assert not Readiness().ready and Readiness().problem() is None  # on its way, not failing
    failed = observe(Readiness(), check, FAIL)
    assert failed.problem() == ("ReadinessCheckFailed", "readiness check failed: " + FAIL.detail)
    # A pass short of successThreshold still names the last failure.
    slow = ReadinessCheck(success_threshold=2)
    assert observe(failed, slow, PASS).problem() == failed.problem()
    assert observe(observe(failed, slow, PASS), slow, PASS).problem() is None
    # Ready with a failure below failureThreshold: nothing to report.
    ready = observe(Readiness(), check, PASS)
    assert observe(ready, check, FAIL).ready and observe(ready, check, FAIL).problem() is None


def test_the_message_of_a_repeated_failure_does_not_change() -> None:
    """No count in the message: a check that keeps failing the same way writes nothing new."""
    check = ReadinessCheck()
    one = observe(Readiness(), check, FAIL)
    many = observe(observe(one, check, FAIL), check, FAIL)
    assert one.problem() == many.problem()


@pytest.mark.parametrize(
    ("status", "error", "passed", "detail"),
    [
        (200, "", True, "GET /healthz answered 200"),
        (204, "", True, "GET /healthz answered 204"),
        (302, "", True, "GET /healthz answered 302"),  # 3xx passes, like httpGet
        (399, "", True, "GET /healthz answered 399"),
        (199, "", False, "GET /healthz answered 199"),
        (404, "", False, "GET /healthz answered 404"),
        (500, "", False, "GET /healthz answered 500"),
        (
            502,
            "the guest Trapped: wasm trap: unreachable",
            False,
            "GET /healthz answered 502: the guest Trapped: wasm trap: unreachable",
        ),
        (504, "the guest timed out: after 1.0 s", False,
         "GET /healthz: no answer within timeoutSeconds (2 s)"),
        (504, "", False, "GET /healthz answered 504"),  # the guest's own 504
    ],
)  # fmt: skip
def test_result_of(status: int, error: str, passed: bool, detail: str) -> None:
    assert result_of("/healthz", status, error, 2) == CheckResult(passed, detail)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/healthz", ("/healthz", "")),
        ("/healthz?full=1&x=%20", ("/healthz", "full=1&x=%20")),  # query stays raw
        ("/a%20b/c", ("/a b/c", "")),  # PATH_INFO decoded once, as for requests
        ("/", ("/", "")),
    ],
)
def test_split_target(path: str, expected: tuple[str, str]) -> None:
    assert split_target(path) == expected
