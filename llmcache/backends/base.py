"""The byte-level storage interface every tier implements, sync and async twins.

A backend sees full physical keys (namespace included) and opaque bytes; the core owns
serialisation, envelopes, promotion and statistics. Multi-key operations have correct
defaults built on the single-key ones; a backend overrides them when it can do better.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar, runtime_checkable

__all__ = [
    "AWAITS",
    "AsyncCacheBackend",
    "BaseAsyncCacheBackend",
    "BaseCacheBackend",
    "CacheBackend",
    "StoredEntry",
    "SyncToAsync",
    "reject_unknown_options",
]


class StoredEntry(NamedTuple):
    """What :meth:`BaseCacheBackend.scan` reports of one stored value."""

    key: str
    size: int
    created: float | None
    expires: float | None


T = TypeVar("T")


AWAITS = ("task", "bounded-reads", "bounded", "inline")
"""How the core awaits an async backend's calls (its ``awaits`` attribute):

- ``"task"`` (the default): each call runs under a timeout task of the core's, so a stalled
  store never holds a request longer than the tier's timeout;
- ``"bounded-reads"``: ``get`` keeps to the timeout the backend was built with (each wait for
  a pooled connection, connect, write and read bounded by it): hits are awaited directly;
  the other calls keep the task;
- ``"bounded"``: every call keeps to that timeout by itself: all are awaited directly;
- ``"inline"``: an in-process store that never blocks, called directly on the event loop.
"""


@runtime_checkable
class CacheBackend(Protocol):
    """What a synchronous tier must do: a key → bytes store with per-key TTLs.

    Only these four methods are required; a backend may also have any of the optional
    capabilities :class:`BaseCacheBackend` lists (detected once, when a tier is built, with
    defaults where absent). Subclass :class:`BaseCacheBackend` to inherit the defaults, or
    write the four methods on any class: both work with sync and async clients.
    """

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` when absent or expired."""

    @abstractmethod
    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: no expiry)."""

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> None:
        """Remove ``keys``; absent keys are ignored."""

    @abstractmethod
    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int | None:
        """Remove the entries whose key matches ``pattern`` and that are older than ``older_than``.

        :param pattern: a glob over physical keys in :mod:`llmcache.backends.globs`' dialect;
            ``None`` matches every key.
        :param older_than: seconds; only entries created at least this long ago. ``None``:
            any age.
        :return: the number of entries removed, or ``None`` when the store cannot count.
        """


class BaseCacheBackend(CacheBackend):
    """A base class for synchronous backends, with a default for every optional capability.

    Optional, each detected once when a tier is built:

    - ``shared`` (attribute, default ``False``): other processes see the same entries;
    - ``get_many`` / ``set_many``: bulk operations (defaults loop over ``get`` / ``set``);
    - creation times: ``set`` and ``set_many`` take a keyword ``created`` (Unix seconds;
      ``None`` means now), so that a promoted entry keeps its age for ``clear(older_than)``;
    - ``close()``: release connections and files;
    - listing: ``supports_scan = True`` and ``scan(pattern)``, for ``llmcache stats``;
    - locks: ``supports_locks = True``, ``try_lock(name, ttl)`` and ``unlock(name, token)``,
      for single-flight across processes;
    - vector search, for semantic matching (all three, coroutines on an async backend):
      ``vectors(dim) -> bool`` (whether the store keeps vectors of that size itself, decided
      on the first call), ``put_vectors(dim, items)`` (``(record key, space, vector)``
      items, each stored beside the record under that key, with its expiry, and removed
      with it) and ``search_vectors(dim, space, vector, k, floor)`` (up to ``k``
      ``(record key, cosine similarity, record bytes)`` of the nearest live vectors of
      ``space`` with a similarity of at least ``floor``, best first). The PostgreSQL tier with
      pgvector has them (see ``llmcache_sql.vectors``).
    """

    shared: ClassVar[bool] = False

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

    def close(self) -> None:
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


@runtime_checkable
class AsyncCacheBackend(Protocol):
    """The asyncio twin of :class:`CacheBackend`: the same required methods, as coroutines.

    Subclass :class:`BaseAsyncCacheBackend` for defaults, or write the four coroutines on
    any class. How the core awaits them is the backend's ``awaits`` attribute (see
    :data:`AWAITS`; default ``"task"``).
    """

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None``."""

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Remove ``keys``."""

    @abstractmethod
    async def clear(
        self, pattern: str | None = None, older_than: float | None = None
    ) -> int | None:
        """Remove matching entries; see :meth:`CacheBackend.clear`."""


class BaseAsyncCacheBackend(AsyncCacheBackend):
    """A base class for asyncio backends, with the defaults :class:`BaseCacheBackend` has.

    :cvar awaits: how the core awaits this backend's calls, one of :data:`AWAITS`.
    """

    shared: ClassVar[bool] = False
    awaits: ClassVar[str] = "task"

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

    async def close(self) -> None:
        """Release connections and files."""

    supports_locks: ClassVar[bool] = False

    async def try_lock(self, name: str, ttl: float) -> str | None:
        """Take a short-lived lock; see :meth:`BaseCacheBackend.try_lock`."""
        raise NotImplementedError

    async def unlock(self, name: str, token: str) -> None:
        """Release a lock taken by :meth:`try_lock`."""
        raise NotImplementedError


class SyncToAsync(BaseAsyncCacheBackend):
    """Serve a sync backend to async clients.

    :param backend: the sync backend (with every capability filled in: see
        :func:`llmcache.backends.capabilities.conform`).
    :param in_thread: run each call in a worker thread (for backends that block on I/O);
        ``False`` calls it inline, for in-memory stores that never block.
    """

    def __init__(self, backend: Any, *, in_thread: bool = True) -> None:
        self.backend = backend
        self.in_thread = in_thread
        self.awaits = "task" if in_thread else "inline"  # type: ignore[misc]
        self.shared = bool(getattr(backend, "shared", False))  # type: ignore[misc]
        self.supports_locks = bool(getattr(backend, "supports_locks", False))  # type: ignore[misc]
        for name in ("vectors", "put_vectors", "search_vectors"):  # only where it has them
            method = getattr(backend, name, None)
            if callable(method):
                setattr(self, name, self._forward(method))

    def _forward(self, method: Callable[..., T]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> T:
            return await self._call(method, *args, **kwargs)

        return call

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
    from llmcache.errors import ConfigError

    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for {what}; known: {', '.join(known)}"
        )
