"""What the proxy has done lately, for the dashboard and ``/api/stats``.

:class:`Activity` is an ordinary llmcache plugin: its ``llmcache_on_hit`` hook adds what each
hit saved to the totals per model and per tier, and to a time series of five-second
buckets. The proxy adds one :class:`Served` record per API call (the latest few hundred are
kept) with its outcome, tier, age and latency. Nothing here holds a header, a prompt or
an answer.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from llmcache._observe.events import CacheEvent
from llmcache.hookspecs import hookimpl

__all__ = ["Activity", "Served"]

BUCKET_SECONDS = 5
BUCKETS = 180  # fifteen minutes
MAX_GROUPS = 500  # models and tiers counted apart; callers choose model names, so a bound
OTHER = "(other)"


@dataclass(slots=True)
class Served:
    """One API call the proxy answered.

    :param at: when it arrived (seconds since the epoch).
    :param path: the proxy path (``/v1/chat/completions``).
    :param model: the request's ``model``, or ``""``.
    :param status: the HTTP status answered.
    :param outcome: ``hit``, ``miss``, ``bypass``, ``stale``, or ``error`` (answered by the
        proxy itself: a bad request, an upstream out of reach).
    :param tier: the tier label of a hit, or ``""``.
    :param age: a hit's age in seconds, or ``None``.
    :param latency_ms: milliseconds until the answer's headers were ready.
    :param stream: the answer was a stream of events.
    """

    at: float
    path: str
    model: str
    status: int
    outcome: str
    tier: str
    age: int | None
    latency_ms: float
    stream: bool


def _bucket() -> dict[str, Any]:
    return {"requests": 0, "hits": 0, "tokens_saved": 0, "cost_saved_usd": 0.0}


def _group() -> dict[str, Any]:
    return {"requests": 0, "hits": 0, "tokens_saved": 0, "cost_saved_usd": 0.0}


class Activity:
    """Totals, per-model and per-tier savings, a time series and the latest calls.

    :param recent: how many of the latest calls to keep.
    """

    def __init__(self, recent: int = 200) -> None:
        self.started = time.time()
        self.recent: deque[Served] = deque(maxlen=recent)
        self.outcomes: dict[str, int] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.tiers: dict[str, dict[str, Any]] = {}
        self._series: deque[tuple[int, dict[str, Any]]] = deque(maxlen=BUCKETS)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def _now_bucket(self, at: float) -> dict[str, Any]:
        slot = int(at) // BUCKET_SECONDS * BUCKET_SECONDS
        series = self._series
        if not series or series[-1][0] != slot:
            series.append((slot, _bucket()))
        return series[-1][1]

    def served(self, record: Served) -> None:
        """Count one API call the proxy answered."""
        self.recent.append(record)
        self.outcomes[record.outcome] = self.outcomes.get(record.outcome, 0) + 1
        bucket = self._now_bucket(record.at)
        bucket["requests"] += 1
        model = self._group(self.models, record.model)
        model["requests"] += 1
        if record.outcome in ("hit", "stale"):
            bucket["hits"] += 1
            model["hits"] += 1

    @staticmethod
    def _group(groups: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        found = groups.get(name)
        if found is None:
            if len(groups) >= MAX_GROUPS:
                name = OTHER
            found = groups.get(name)
            if found is None:
                found = groups[name] = _group()
        return found

    @hookimpl
    def llmcache_on_hit(self, event: CacheEvent) -> None:
        """Add what a hit saved, per model, per tier and over time."""
        model = str(event.request.params.get("model") or "")
        group = self._group(self.tiers, event.tier or "in flight")
        group["hits"] += 1
        for where in (group, self._group(self.models, model), self._now_bucket(time.time())):
            where["tokens_saved"] += event.tokens_saved
            where["cost_saved_usd"] += event.cost_saved_usd

    def _points(self) -> list[dict[str, Any]]:
        """Return the time series up to now, quiet buckets included as zeros."""
        known = dict(self._series)
        if not known:
            return []
        now = int(time.time()) // BUCKET_SECONDS * BUCKET_SECONDS
        first = max(min(known), now - (BUCKETS - 1) * BUCKET_SECONDS)
        return [
            {"at": at, **known.get(at, _bucket())}
            for at in range(first, now + BUCKET_SECONDS, BUCKET_SECONDS)
        ]

    def snapshot(self, limit: int = 50) -> dict[str, Any]:
        """Return the activity as JSON-ready data (the ``limit`` latest calls, newest first)."""
        latest = [asdict(r) for r in list(self.recent)[-limit:]]
        latest.reverse()
        return {
            "started": self.started,
            "outcomes": dict(self.outcomes),
            "models": {k: dict(v) for k, v in self.models.items()},
            "tiers": {k: dict(v) for k, v in self.tiers.items()},
            "series": {"bucket_seconds": BUCKET_SECONDS, "points": self._points()},
            "recent": latest,
        }
