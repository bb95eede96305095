"""One user call on its way through the engine, and the steps the engine's flows yield.

The engine's decisions (serve a stale entry while refreshing it, try a semantic match, fetch
once for many callers, store the answer) are written once, as generators shared by the sync
and async engines. A flow yields what it needs done and receives the result: a tier
operation (:class:`~llmcache._tiers.ops.Op`), a :class:`Pause`, an :class:`Upstream` call,
or one of the engine's own steps below. Each engine's ``run`` makes them, blocking or
awaited; only ``run`` calls the upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from llmcache._engine.planning import Plan
from llmcache.providers.base import EndpointAdapter

__all__ = ["Call", "Fetch", "Pause", "Refresh", "Semantic", "Upstream"]


@dataclass(slots=True)
class Call:
    """A planned call: what the cache will do (``plan``), how answers of its endpoint are
    read (``adapter``), and how to reach the upstream.

    :param params: the upstream arguments (``cache_*`` options taken out).
    :param stream: the caller asked for a stream.
    :param started: ``time.perf_counter()`` when the call came in, for events.
    :param upstream: the SDK method (or transport) that calls the LLM.
    :param raw: the same method returning the SDK's raw response, where the SDK has one: a
        miss then stores the response's JSON text as it came.
    """

    plan: Plan
    adapter: EndpointAdapter
    params: dict[str, Any]
    stream: bool
    started: float
    upstream: Callable[..., Any]
    raw: Callable[..., Any] | None = None


class Upstream(NamedTuple):
    """Call the upstream with these arguments (its error is thrown back into the flow)."""

    params: dict[str, Any]


class Pause(NamedTuple):
    """Wait this many seconds (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


class Fetch(NamedTuple):
    """Fetch the call's answer once for every caller asking for it now (single-flight);
    the result is ``(outcome, coalesced)``."""

    call: Call


class Refresh(NamedTuple):
    """Refresh the call's entry in the background (``stale-while-revalidate``)."""

    call: Call


class Semantic(NamedTuple):
    """Look for a semantic match of the call; the result is a match or ``None``."""

    call: Call
