"""The workload behind ``llmcache demo``: repeated questions through a cached client."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DemoReport", "default_tier", "run_demo"]

QUESTIONS = (
    "What is a cache?",
    "Explain the difference between a process and a thread.",
    "Write a function that reverses a string in Python.",
    "What is the capital of France?",
    "Explain what an LRU cache evicts first.",
    "Define idempotence in one sentence.",
)
DEMO_PORT = 18231
SYSTEM = "You are a concise assistant. Answer in at most two sentences."


def default_tier() -> str:
    """Return the demo's SQLite tier URL, in the user's cache directory."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmcache"
    base.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base / 'demo.db'}"


@dataclass
class DemoReport:
    """What the demo measured."""

    upstream: str
    tier: str
    requests: int
    hits: int
    misses: int
    tokens_saved: int
    cost_saved_usd: float
    elapsed: float
    miss_seconds: float
    hit_seconds: float
    expected_miss: float | None = None  # seconds an upstream call takes, when known

    @property
    def time_saved(self) -> float:
        """Seconds the hits saved: what they would have cost as misses, less what they took."""
        per_miss = self.miss_seconds / self.misses if self.misses else self.expected_miss
        if per_miss is None:
            return 0.0
        return max(0.0, self.hits * per_miss - self.hit_seconds)

    def rows(self) -> list[tuple[str, str]]:
        """The report as label/value rows."""
        rate = self.hits / self.requests if self.requests else 0.0
        return [
            ("upstream", self.upstream),
            ("cache tier", self.tier),
            ("requests", str(self.requests)),
            ("hits", f"{self.hits} ({rate:.0%})"),
            ("misses (upstream calls)", str(self.misses)),
            ("tokens saved", str(self.tokens_saved)),
            ("dollars saved", f"${self.cost_saved_usd:.6f}"),
            ("time spent", f"{self.elapsed:.2f} s"),
            ("time saved", f"{self.time_saved:.2f} s"),
        ]


@contextmanager
def _upstream(delay: float) -> Iterator[tuple[str, str]]:
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        yield base_url, os.environ.get("OPENAI_API_KEY", "")
        return
    from llmcache.tools.simulator import Simulator

    # The upstream's URL is part of every key: a fixed port lets a second run hit the
    # entries of the first.
    try:
        sim = Simulator(delay=delay, port=DEMO_PORT).start()
    except OSError:
        sim = Simulator(delay=delay).start()
    try:
        yield sim.base_url, "sk-demo"
    finally:
        sim.stop()


def run_demo(
    *,
    tier: str | None = None,
    rounds: int = 3,
    delay: float = 0.25,
    model: str = "gpt-4o-mini",
    echo: Callable[[str], Any] = print,
) -> DemoReport:
    """Ask each demo question ``rounds`` times through a cached client and report.

    :param tier: the tier URL (default: a SQLite file in the user's cache directory).
    :param delay: the simulator's answer time in seconds (ignored with ``OPENAI_BASE_URL``).
    """
    from openai import OpenAI

    from llmcache._wrapper.client import CachedClient

    tier = tier or default_tier()
    with _upstream(delay) as (base_url, api_key):
        openai_client = OpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0)
        with CachedClient(openai_client, tiers=[tier], namespace="demo") as client:
            miss_seconds = hit_seconds = 0.0
            started = time.perf_counter()
            for round_ in range(rounds):
                for question in QUESTIONS:
                    t0 = time.perf_counter()
                    answer = client.chat.completions.create(
                        model=model,
                        messages=[
                            {"role": "system", "content": SYSTEM},
                            {"role": "user", "content": question},
                        ],
                    )
                    took = time.perf_counter() - t0
                    if answer.cache_hit:
                        hit_seconds += took
                    else:
                        miss_seconds += took
                    if round_ == 0:
                        source = answer.cache_tier if answer.cache_hit else "upstream"
                        label = "hit " if answer.cache_hit else "miss"
                        echo(f"  {label} {took * 1000:7.1f} ms  [{source}]  {question}")
            stats = client.stats()
            elapsed = time.perf_counter() - started
    return DemoReport(
        upstream=base_url if os.environ.get("OPENAI_BASE_URL") else "built-in simulator",
        tier=tier,
        requests=stats.requests,
        hits=stats.hits,
        misses=stats.misses,
        tokens_saved=stats.tokens_saved,
        cost_saved_usd=stats.cost_saved_usd,
        elapsed=elapsed,
        miss_seconds=miss_seconds,
        hit_seconds=hit_seconds,
        expected_miss=None if os.environ.get("OPENAI_BASE_URL") else delay,
    )
