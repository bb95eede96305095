"""The byte-level storage interface every tier implements, sync and async twins.

A backend sees full physical keys (namespace included) and opaque bytes; the core owns
serialisation, envelopes, promotion and statistics. Multi-key operations have correct
defaults built on the single-key ones; a backend overrides them when it can do better.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

__all__ = [
    "AsyncCacheBackend",
    "CacheBackend",
    "StoredEntry",
    "SyncToAsync",
    "reject_unknown_options",
]


class StoredEntry(NamedTuple):
    """What :meth:`CacheBackend.scan` reports of one stored value."""

    key: str
    size: int
    created: float | None
    expires: float | None


T = TypeVar("T")


class CacheBackend(ABC):
    """A synchronous key → bytes store with per-key TTLs.

    ``ttl`` is in seconds, ``None`` for no expiry. ``created`` is the entry's creation time
    (Unix seconds; ``None`` means now): a promoted entry keeps its age, so that
    ``clear(older_than=...)`` treats it like the original.

    :cvar shared: ``True`` when other processes see the same entries (Redis, SQL, memcached).
    """

    shared: ClassVar[bool] = False

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` when absent or expired."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys``, aligned with them (``None`` where absent)."""
        return [self.get(key) for key in keys]

    @abstractmethod
    def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: no expiry)."""

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        """Store every item with the same TTL."""
        for key, value in items.items():
            self.set(key, value, ttl, created=created)

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> None:
        """Remove ``keys``; absent keys are ignored."""

    @abstractmethod
    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int | None:
        """Remove the entries whose key matches ``pattern`` and that are older than ``older_than``.

        :param pattern: a glob over physical keys in :mod:`llmcache.globs`' dialect;
            ``None`` matches every key.
        :param older_than: seconds; only entries created at least this long ago. ``None``:
            any age.
        :return: the number of entries removed, or ``None`` when the store cannot count.
        """

    def close(self) -> None:  # noqa: B027 - a backend without resources needs no close
        """Release connections and files."""

    # -- optional: listing, for ``llmcache stats`` ---------------------------------------

    supports_scan: ClassVar[bool] = False

    def scan(self, pattern: str | None = None) -> Iterator[StoredEntry]:
        """Yield what is stored under keys matching ``pattern`` (a glob; ``None``: all).

        Only called when :attr:`supports_scan` is true; stores that cannot list their keys
        (memcached) leave it out.
        """
        raise NotImplementedError

    # -- optional: cross-process single-flight -------------------------------------------

    supports_locks: ClassVar[bool] = False

    def try_lock(self, name: str, ttl: float) -> str | None:
        """Take a short-lived lock; return a token, or ``None`` if another holder has it.

        Only called when :attr:`supports_locks` is true. The lock must expire by itself
        after ``ttl`` seconds, so that a dead holder never blocks anyone for longer.
        """
        raise NotImplementedError

    def unlock(self, name: str, token: str) -> None:
        """Release a lock taken by :meth:`try_lock`, if ``token`` still holds it."""
        raise NotImplementedError


class AsyncCacheBackend(ABC):
    """The asyncio twin of :class:`CacheBackend`: the same methods, as coroutines.

    The core bounds every call by the tier's timeout with a task of its own. A backend whose
    ``get`` already gives up within the timeout it was built with (each wait for a pooled
    connection, connect, write and read bounded by it) sets ``bounds_reads = True``: the
    hit path then awaits its ``get`` directly, without that task.
    """

    shared: ClassVar[bool] = False
    bounds_reads: ClassVar[bool] = False

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None``."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys``, aligned with them."""
        return [await self.get(key) for key in keys]

    @abstractmethod
    async def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""

    async def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        """Store every item with the same TTL."""
        for key, value in items.items():
            await self.set(key, value, ttl, created=created)

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Remove ``keys``."""

    @abstractmethod
    async def clear(
        self, pattern: str | None = None, older_than: float | None = None
    ) -> int | None:
        """Remove matching entries; see :meth:`CacheBackend.clear`."""

    async def close(self) -> None:  # noqa: B027
        """Release connections and files."""

    supports_locks: ClassVar[bool] = False

    async def try_lock(self, name: str, ttl: float) -> str | None:
        """Take a short-lived lock; see :meth:`CacheBackend.try_lock`."""
        raise NotImplementedError

    async def unlock(self, name: str, token: str) -> None:
        """Release a lock taken by :meth:`try_lock`."""
        raise NotImplementedError


class SyncToAsync(AsyncCacheBackend):
    """Serve a sync backend to async clients.

    :param backend: the sync backend.
    :param in_thread: run each call in a worker thread (for backends that block on I/O);
        ``False`` calls it inline, for in-memory stores that never block.
    """

    def __init__(self, backend: CacheBackend, *, in_thread: bool = True) -> None:
        self.backend = backend
        self.in_thread = in_thread
        self.shared = backend.shared  # type: ignore[misc]
        self.supports_locks = backend.supports_locks  # type: ignore[misc]

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.in_thread:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def get(self, key: str) -> bytes | None:
        return await self._call(self.backend.get, key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._call(self.backend.get_many, keys)

    async def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        await self._call(self.backend.set, key, value, ttl, created=created)

    async def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        await self._call(self.backend.set_many, items, ttl, created=created)

    async def delete(self, keys: Sequence[str]) -> None:
        await self._call(self.backend.delete, keys)

    async def clear(
        self, pattern: str | None = None, older_than: float | None = None
    ) -> int | None:
        return await self._call(self.backend.clear, pattern, older_than)

    async def close(self) -> None:
        await self._call(self.backend.close)

    async def try_lock(self, name: str, ttl: float) -> str | None:
        return await self._call(self.backend.try_lock, name, ttl)

    async def unlock(self, name: str, token: str) -> None:
        await self._call(self.backend.unlock, name, token)


def reject_unknown_options(what: str, options: Mapping[str, object], known: Sequence[str]) -> None:
    """Raise :class:`~llmcache.ConfigError` naming options a backend does not accept."""
    from ..errors import ConfigError

    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for {what}; known: {', '.join(known)}"
        )
