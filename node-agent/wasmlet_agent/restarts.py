"""What to do when a command-mode instance's run ends: restart, complete, or give up."""

from __future__ import annotations

from enum import StrEnum

from wasmlet.api.constants import RestartPolicy


class AfterExit(StrEnum):
    RESTART = "Restart"  # back off, then start again
    COMPLETE = "Complete"  # succeeded; stays Completed
    FAIL = "Fail"  # failed; stays Failed


def after_exit(policy: RestartPolicy, succeeded: bool) -> AfterExit:
    """The kubelet's rule: Always restarts, OnFailure restarts failures, Never never does."""
    if policy is RestartPolicy.ALWAYS:
        return AfterExit.RESTART
    if policy is RestartPolicy.ON_FAILURE:
        return AfterExit.COMPLETE if succeeded else AfterExit.RESTART
    return AfterExit.COMPLETE if succeeded else AfterExit.FAIL
