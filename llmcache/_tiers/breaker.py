"""A per-tier circuit breaker: stop calling a dead tier on every request."""

from __future__ import annotations

import threading
import time

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures; let one trial call through after
    ``reset_after`` seconds (half-open); close again on the first success.

    :param threshold: consecutive failures that open the circuit.
    :param reset_after: seconds the circuit stays open before a trial call.
    """

    def __init__(self, threshold: int = 3, reset_after: float = 5.0) -> None:
        if threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, not {threshold!r}")
        if reset_after < 0:
            raise ValueError(f"recovery_time must be >= 0 seconds, not {reset_after!r}")
        self.threshold = threshold
        self.reset_after = reset_after
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """Whether calls are being refused right now."""
        return self.opened_at is not None

    def allow(self) -> bool:
        """Tell whether a call may go to the tier now."""
        if self.opened_at is None:
            return True
        with self._lock:
            if self.opened_at is None:
                return True
            if self._trial or time.monotonic() - self.opened_at < self.reset_after:
                return False
            self._trial = True  # half-open: exactly one trial call
            return True

    def success(self) -> None:
        """Record a call that worked: close the circuit."""
        if self.failures or self.opened_at is not None:
            with self._lock:
                self.failures = 0
                self.opened_at = None
                self._trial = False

    def failure(self) -> None:
        """Record a failed call; open (or re-open) the circuit past the threshold."""
        with self._lock:
            self.failures += 1
            if self._trial or self.failures >= self.threshold:
                self.opened_at = time.monotonic()
                self._trial = False
