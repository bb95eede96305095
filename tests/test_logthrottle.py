"""A failing tier logs once per cause per interval, with a count of the repeats."""

from __future__ import annotations

import logging
import time

import pytest

from llmcache._observe.logthrottle import ThrottledLog


def test_repeats_of_one_cause_are_counted_into_one_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttled = ThrottledLog(logging.getLogger("llmcache"), interval=0.2)
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        for port in range(37):  # the same refusal from 37 ports is one cause
            throttled.failure("L2:redis", "failed in", f"ConnectionError: 127.0.0.1:{port}")
        time.sleep(0.25)
        throttled.failure("L2:redis", "failed in", "ConnectionError: 127.0.0.1:99")
        throttled.failure("L2:redis", "failed in", "TimeoutError: no answer")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "llmcache failed in L2:redis: ConnectionError: 127.0.0.1:0"
    assert lines[1].startswith("llmcache failed in L2:redis 37 times in the last 0.2")
    assert lines[2] == "llmcache failed in L2:redis: TimeoutError: no answer"
    assert len(lines) == 3
