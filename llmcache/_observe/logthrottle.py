"""Log a failing tier once per cause per interval, with a count, instead of once per call.

A tier that is down fails on every call that reaches it (the breaker lets a trial through
every ``recovery_time``; a cluster or pool fails once per node per retry): one line per
failure floods the log without saying more. The first failure of a cause is logged at
once; the repeats within :data:`INTERVAL` seconds are counted, and the next one after it
logs the count: ``llmcache failed in L2:redis-cluster 37 times in the last 10 s:
ConnectionError: ...``. A cause is the tier, what failed and the error's text with its
numbers left out (the same refusal from another node's port, or after another timeout, is
the same cause).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Final

__all__ = ["INTERVAL", "ThrottledLog"]

#: Seconds between two lines about the same cause.
INTERVAL: Final = 10.0
#: Causes remembered at most; past this the oldest are forgotten (and logged afresh).
MAX_CAUSES: Final = 256
_NUMBERS: Final = re.compile(r"\d+")


class ThrottledLog:
    """Warnings about tier failures, at most one line per cause per ``interval`` seconds.

    :param logger: where the lines go.
    :param interval: seconds between two lines of one cause.
    """

    def __init__(self, logger: logging.Logger, interval: float = INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._causes: dict[tuple[str, str, str], list[float]] = {}  # -> [since, count]
        self._lock = threading.Lock()

    def failure(self, label: str, what: str, cause: str) -> None:
        """Record one failure of tier ``label`` (``what``: "failed in", ...) with ``cause``."""
        key = (label, what, _NUMBERS.sub("#", cause))
        now = time.monotonic()
        with self._lock:
            state = self._causes.get(key)
            if state is not None and now - state[0] < self.interval:
                state[1] += 1
                return
            if state is None and len(self._causes) >= MAX_CAUSES:
                self._causes.pop(next(iter(self._causes)))
            self._causes[key] = [now, 0]
        if state is None or state[1] == 0:
            self.logger.warning("llmcache %s %s: %s", what, label, cause)
        else:
            self.logger.warning(
                "llmcache %s %s %d times in the last %.3g s: %s",
                what,
                label,
                state[1] + 1,
                now - state[0],
                cause,
            )
