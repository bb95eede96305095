"""What observers receive through the ``llmcache_on_*`` hooks."""

from __future__ import annotations

from dataclasses import dataclass

from llmcache._rules.request import CacheRequest

__all__ = ["CacheEvent"]


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """One cache outcome, passed to ``llmcache_on_hit``, ``_miss``, ``_store`` and ``_error``.

    :param request: the call it is about.
    :param key: the logical key (namespace excluded).
    :param tier: the label of the tier involved (``"L1:memory"``), or ``None``.
    :param elapsed: seconds the cache work took.
    :param error: the exception, on ``llmcache_on_error`` only.
    :param tokens_saved: tokens a hit saved (0 otherwise).
    :param cost_saved_usd: dollars a hit saved (0 otherwise).
    """

    request: CacheRequest
    key: str
    tier: str | None = None
    elapsed: float = 0.0
    error: BaseException | None = None
    tokens_saved: int = 0
    cost_saved_usd: float = 0.0
