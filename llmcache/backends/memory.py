"""The in-process memory tier: TTLs, LRU eviction by entry count and by bytes.

URL: ``memory://?max_entries=N&max_bytes=N``; each client gets a store of its own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from llmcache.backends import globs
from llmcache.backends.base import (
    BaseCacheBackend,
    StoredEntry,
    SyncToAsync,
    reject_unknown_options,
)
from llmcache.errors import ConfigError
from llmcache.hookspecs import RegisterBackend, hookimpl

__all__ = ["MemoryBackend"]


class _Item(NamedTuple):
    value: bytes
    expires: float | None
    created: float


class MemoryBackend(BaseCacheBackend):
    """A thread-safe LRU dictionary with per-entry expiry (writes lock, reads do not).

    :param max_entries: evict the least recently used entries beyond this count.
    :param max_bytes: evict the least recently used entries beyond this many value bytes.
    """

    shared = False

    def __init__(self, max_entries: int | None = None, max_bytes: int | None = None) -> None:
        for name, limit in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if limit is not None and (not isinstance(limit, int) or limit < 1):
                raise ConfigError(f"{name} must be a positive integer, not {limit!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, _Item] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """The bytes of all values held."""
        return self._bytes

    def get(self, key: str) -> bytes | None:
        # A read takes no lock: a lookup and a move_to_end of a str key are each atomic
        # under the GIL, and a key dropped between the two was still a valid read.
        item = self._items.get(key)
        if item is None:
            return None
        if item.expires is not None and item.expires <= time.time():
            with self._lock:
                if self._items.get(key) is item:
                    self._drop(key)
            return None
        try:  # noqa: SIM105 (contextlib.suppress costs more than the read itself)
            self._items.move_to_end(key)
        except KeyError:
            pass
        return item.value

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        now = time.time()
        item = _Item(
            bytes(value), None if ttl is None else now + ttl, now if created is None else created
        )
        with self._lock:
            self._drop(key)
            self._items[key] = item
            self._bytes += len(item.value)
            self._evict()

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        for key, value in items.items():
            self.set(key, value, ttl, created=created)

    def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._drop(key)

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        match = globs.to_regex(pattern).match if pattern is not None else None
        cutoff = None if older_than is None else time.time() - older_than
        with self._lock:
            doomed = [
                key
                for key, item in list(self._items.items())  # a copy: reads reorder unlocked
                if (match is None or match(key)) and (cutoff is None or item.created <= cutoff)
            ]
            for key in doomed:
                self._drop(key)
        return len(doomed)

    supports_scan = True

    def scan(self, pattern: str | None = None) -> Iterator[StoredEntry]:
        match = globs.to_regex(pattern).match if pattern is not None else None
        now = time.time()
        with self._lock:
            items = list(self._items.items())
        for key, item in items:
            if (match is None or match(key)) and (item.expires is None or item.expires > now):
                yield StoredEntry(key, len(item.value), item.created, item.expires)

    def close(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= len(item.value)

    def _evict(self) -> None:
        while self._items and (
            (self.max_entries is not None and len(self._items) > self.max_entries)
            or (self.max_bytes is not None and self._bytes > self.max_bytes)
        ):
            _, item = self._items.popitem(last=False)
            self._bytes -= len(item.value)


def _positive_int(name: str, value: str, url: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{name}={value!r} in {url!r} must be a positive integer")
    return number


def from_url(url: str, **options: Any) -> MemoryBackend:
    """Build a memory store from ``memory://?max_entries=N&max_bytes=N``."""
    options.pop("timeout", None)  # memory never waits
    reject_unknown_options("memory://", options, ())
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    reject_unknown_options(url, query, ("max_entries", "max_bytes"))
    limits = {name: _positive_int(name, value, url) for name, value in query.items()}
    return MemoryBackend(**limits)


def async_from_url(url: str, **options: Any) -> SyncToAsync:
    """Build a memory store for an async client (called inline: it never blocks)."""
    return SyncToAsync(from_url(url, **options), in_thread=False)


@hookimpl
def llmcache_register_backends(register: RegisterBackend) -> None:
    """Serve ``memory://``."""
    register("memory", from_url, async_factory=async_from_url)
