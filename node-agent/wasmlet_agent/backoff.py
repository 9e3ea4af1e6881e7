"""Restart back-off maths, kept apart from sleeping (kubelet-style: base doubling to a cap)."""

from __future__ import annotations

from dataclasses import dataclass

from wasmlet.api.spec import MIN_BACKOFF_SECONDS


def next_delay(restarts: int, base: float, cap: float) -> float:
    """Delay before restart number `restarts` + 1: base * 2**restarts, at most cap."""
    if restarts < 0:
        raise ValueError("restarts must be >= 0")
    if base <= 0:
        return 0.0
    # Stop doubling once past the cap so huge restart counts cannot overflow.
    delay = base
    for _ in range(restarts):
        delay *= 2
        if delay >= cap:
            return cap
    return min(delay, cap)


@dataclass
class Backoff:
    """Per-instance restart bookkeeping: resets after a run that lasted long enough."""

    base: float
    cap: float
    restarts: int = 0

    def __post_init__(self) -> None:
        # The API refuses less; an older object or a skewed schema still gets the floor.
        self.base = max(self.base, MIN_BACKOFF_SECONDS)
        self.cap = max(self.cap, self.base)

    def on_exit(self, ran_for: float) -> float:
        """Record an ended run; return how long to wait before the next start."""
        # Like the kubelet: a run that stayed up for twice the cap clears the back-off.
        if ran_for >= max(2 * self.cap, 1.0) and self.cap > 0:
            self.restarts = 0
        delay = next_delay(self.restarts, self.base, self.cap)
        self.restarts += 1
        return delay
