"""Single-flight: identical calls in flight at once reach the upstream once.

The first caller of a key (the leader) runs the call; callers arriving while it runs wait
and receive the leader's result, or its exception.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["AsyncSingleFlight", "SingleFlight"]

T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        # held by the leader until the call is over: waiters block on acquiring it
        self.done = threading.Lock()
        self.done.acquire()
        self.result: T | None = None
        self.error: BaseException | None = None

    def wait(self) -> None:
        with self.done:
            pass


class SingleFlight(Generic[T]):
    """Coalesce identical calls across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, _Call[T]] = {}

    def do(self, key: str, fn: Callable[[], T]) -> tuple[T, bool]:
        """Run ``fn`` once for all concurrent callers of ``key``.

        :return: the result and whether this caller waited on another's call.
        """
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.wait()
            if call.error is not None:
                raise call.error
            return call.result, True  # type: ignore[return-value]
        try:
            call.result = fn()
            return call.result, False
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.release()


class AsyncSingleFlight(Generic[T]):
    """Coalesce identical calls across the tasks of an event loop."""

    def __init__(self) -> None:
        self._calls: dict[tuple[int, str], asyncio.Future[T]] = {}

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Await ``fn()`` once for all concurrent callers of ``key``.

        :return: the result and whether this caller waited on another's call.
        """
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        while (pending := self._calls.get(slot)) is not None:
            try:
                return await asyncio.shield(pending), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # the leader was cancelled, not us: try again, perhaps as the leader
        future: asyncio.Future[T] = loop.create_future()
        self._calls[slot] = future
        try:
            result = await fn()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: there may be no waiter
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            del self._calls[slot]
