"""Readiness checks (spec.http.readinessCheck): what a result means, as pure decisions.

Like the kubelet's httpGet readiness probe: a revision starts not ready (the kubelet's initial
readiness result is Failure); successThreshold passes in a row make it ready, and
failureThreshold failures in a row make it not ready again. 2xx and 3xx pass; anything else
fails, including the answers the agent gives for the guest (502 for a trap or broken CGI
output, 504 for a check that outlived timeoutSeconds). The message of a failed check carries
no count, so a check that keeps failing the same way changes nothing to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from wasmlet.api.placements import Reason
from wasmlet.api.spec import ReadinessCheck


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    detail: str  # what happened, e.g. "GET /healthz answered 500"


@dataclass(frozen=True)
class Readiness:
    """Where one revision's readiness stands after the results so far."""

    ready: bool = False
    successes: int = 0  # in a row
    failures: int = 0  # in a row
    last_failure: str = ""  # detail of the latest failed check ("" before any failed)

    def problem(self) -> tuple[str, str] | None:
        """(reason, message) for status while not ready after a failed check, else None."""
        if self.ready or not self.last_failure:
            return None
        return Reason.READINESS_CHECK_FAILED, f"readiness check failed: {self.last_failure}"


def split_target(path: str) -> tuple[str, str]:
    """(PATH_INFO, QUERY_STRING) of a check's path: the path percent-decoded once (as the HTTP
    front gives it to requests), the query raw."""
    base, _, query = path.partition("?")
    return unquote(base), query


def result_of(path: str, status: int, error: str, timeout_seconds: int) -> CheckResult:
    """How one check went, from the status the request path answered and the agent's error."""
    if 200 <= status < 400:
        return CheckResult(True, f"GET {path} answered {status}")
    if status == 504 and error:
        return CheckResult(
            False, f"GET {path}: no answer within timeoutSeconds ({timeout_seconds} s)"
        )
    if error:  # the agent answered for the guest: say why
        return CheckResult(False, f"GET {path} answered {status}: {error}")
    return CheckResult(False, f"GET {path} answered {status}")


def observe(state: Readiness, check: ReadinessCheck, result: CheckResult) -> Readiness:
    """The state after one more result."""
    if result.passed:
        successes = state.successes + 1
        ready = state.ready or successes >= check.success_threshold
        return Readiness(ready, successes, 0, state.last_failure)
    failures = state.failures + 1
    ready = state.ready and failures < check.failure_threshold
    return Readiness(ready, 0, failures, result.detail)
