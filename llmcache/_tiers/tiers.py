"""The drivers of tier operations: :class:`Tiers` makes them blocking, :class:`AsyncTiers`
awaited, each through the tier's circuit breaker (and, async, its timeout).

A failing tier is skipped (fail-open) and counted, or raises
:class:`~llmcache.BackendError` when ``fail_open=False``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from llmcache._tiers.codec import Entry
from llmcache._tiers.ops import Op
from llmcache._tiers.steps import BAD, FAILED, UNREAD, Steps, TierLogic
from llmcache._tiers.tier import Found, Scope, Tier, fresh

__all__ = ["AsyncTiers", "Tiers"]

log = logging.getLogger("llmcache")


class Tiers(TierLogic):
    """The tiers of a sync client."""

    def run(self, steps: Steps, scope: Scope | None = None) -> Any:
        """Drive a step generator of tier operations to its result."""
        try:
            op = next(steps)
            while True:
                op = steps.send(self.call(op, scope))
        except StopIteration as done:
            return done.value

    def call(self, op: Op, scope: Scope | None = None) -> Any:
        """Make one guarded backend call; :data:`FAILED` when skipped or failed."""
        tier = op.tier
        if self._skip(tier, scope):
            return FAILED
        try:
            result = op.apply(tier.backend)
        except Exception as exc:
            self._failed(tier, exc, scope)
            return FAILED
        tier.breaker.success()
        return result

    def lookup(
        self,
        pkey: str,
        tiers: Sequence[Tier],
        max_age: float | None,
        scope: Scope,
        check: Callable[[Entry], Any],
        read: Any = UNREAD,
    ) -> tuple[Found | None, bool]:
        """Run :meth:`lookup_steps`; a fresh entry in the first tier, the hit path, is
        returned straight from one guarded read.

        :param read: what the first tier's read returned already (the engine's quick hit
            path), or the exception it raised.
        """
        tier = tiers[0]
        data = FAILED
        breaker = tier.breaker
        if read is not UNREAD:
            data = self.taken(tier, read, scope)
        # The first tier's read made here rather than through a Get op and run(): ~1 µs of
        # a ~17 µs memory hit (benchmarks: hits.py), kept for that.
        elif (breaker.opened_at is None and not scope.failed) or not self._skip(tier, scope):
            try:
                data = tier.backend.get(pkey)
            except Exception as exc:
                self._failed(tier, exc, scope)
            else:
                breaker.success()
        found = self._accept(tier, data, pkey, scope, check)
        if found is not None and found is not BAD and fresh(found.entry, time.time(), max_age):
            return found, True
        return self.run(self.lookup_steps(pkey, tiers, max_age, scope, check, first=found), scope)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close every backend."""
        for tier in self.tiers:
            try:
                tier.backend.close()
            except Exception:
                log.warning("llmcache tier %s failed to close", tier.label, exc_info=True)


async def _bounded(call: Awaitable[Any], timeout: float) -> Any:
    """Await ``call`` for at most ``timeout`` seconds.

    Unlike ``asyncio.wait_for``, do not wait for the cancelled operation to clean up: a
    driver cancelling on a dead network can take longer than the timeout itself.
    """
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait((task,), timeout=timeout)
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        raise TimeoutError(f"no answer within {timeout} s")
    return task.result()


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a late failure of an abandoned call is not news


class AsyncTiers(TierLogic):
    """The tiers of an async client; each call is bounded by the tier's timeout."""

    async def run(self, steps: Steps, scope: Scope | None = None) -> Any:
        """Drive a step generator of tier operations to its result, awaiting each one."""
        try:
            op = next(steps)
            while True:
                op = steps.send(await self.call(op, scope))
        except StopIteration as done:
            return done.value

    async def call(self, op: Op, scope: Scope | None = None) -> Any:
        """Make one guarded backend call; :data:`FAILED` when skipped or failed."""
        tier = op.tier
        if self._skip(tier, scope):
            return FAILED
        try:
            if tier.direct is not None:
                result = op.apply(tier.direct)
            else:
                call = op.apply(tier.backend)
                result = await (call if tier.inline else _bounded(call, tier.timeout))
        except Exception as exc:
            self._failed(tier, exc, scope)
            return FAILED
        tier.breaker.success()
        return result

    async def lookup(
        self,
        pkey: str,
        tiers: Sequence[Tier],
        max_age: float | None,
        scope: Scope,
        check: Callable[[Entry], Any],
        read: Any = UNREAD,
    ) -> tuple[Found | None, bool]:
        """The asyncio twin of :meth:`Tiers.lookup`."""
        tier = tiers[0]
        data = FAILED
        breaker = tier.breaker
        if read is not UNREAD:
            data = self.taken(tier, read, scope)
        elif (breaker.opened_at is None and not scope.failed) or not self._skip(tier, scope):
            try:
                data = await self.read(tier, pkey)
            except Exception as exc:
                self._failed(tier, exc, scope)
            else:
                breaker.success()
        found = self._accept(tier, data, pkey, scope, check)
        if found is not None and found is not BAD and fresh(found.entry, time.time(), max_age):
            return found, True
        steps = self.lookup_steps(pkey, tiers, max_age, scope, check, first=found)
        return await self.run(steps, scope)  # type: ignore[no-any-return]

    async def read(self, tier: Tier, pkey: str) -> Any:
        """Read ``pkey`` from ``tier`` within its timeout (unguarded: the caller counts a
        failure)."""
        if tier.direct is not None:
            return tier.direct.get(pkey)
        call = tier.backend.get(pkey)
        return await (call if tier.inline or tier.bounded_get else _bounded(call, tier.timeout))

    async def close(self) -> None:
        """Close every backend."""
        for tier in self.tiers:
            try:
                await tier.backend.close()
            except Exception:
                log.warning("llmcache tier %s failed to close", tier.label, exc_info=True)
