"""A conformance suite for cache backends, for llmcache's adapters and third-party ones.

Subclass :class:`BackendSuite` (sync backends) or :class:`AsyncBackendSuite` (async ones) in
a test module and implement the factory; pytest collects every test below for your backend::

    from llmcache.testing import BackendSuite

    class TestMyBackend(BackendSuite):
        def make_backend(self):
            return MyBackend("my://127.0.0.1:9999")

Each test writes keys under a random prefix, so a store shared with other data is safe;
only ``test_clear_without_pattern_removes_everything`` clears the whole store, so give the
suite a store (or database number) of its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pytest

from .backends.base import AsyncCacheBackend, CacheBackend
from .globs import escape

__all__ = ["AsyncBackendSuite", "BackendSuite"]

T = TypeVar("T")


class _Blocking(CacheBackend):
    """Drive an async backend from sync test code, on one event loop of its own."""

    def __init__(self, runner: asyncio.Runner, backend: AsyncCacheBackend) -> None:
        self._run: Callable[[Any], Any] = runner.run
        self.inner = backend
        self.shared = backend.shared  # type: ignore[misc]

    def get(self, key: str) -> bytes | None:
        return self._run(self.inner.get(key))  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._run(self.inner.get_many(keys))  # type: ignore[no-any-return]

    def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        self._run(self.inner.set(key, value, ttl, created=created))

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        self._run(self.inner.set_many(items, ttl, created=created))

    def delete(self, keys: Sequence[str]) -> None:
        self._run(self.inner.delete(keys))

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int | None:
        return self._run(self.inner.clear(pattern, older_than))  # type: ignore[no-any-return]

    def close(self) -> None:
        self._run(self.inner.close())


class BackendSuite:
    """The behaviour every :class:`~llmcache.backends.base.CacheBackend` must show.

    :cvar ttl_resolution: the store's expiry granularity in seconds (memcached: 1).
    :cvar counts_clear: ``clear`` returns a count (``False`` for stores that cannot count).
    """

    ttl_resolution: float = 0.1
    counts_clear: bool = True

    def make_backend(self) -> CacheBackend:
        """Return a fresh backend to test."""
        raise NotImplementedError

    @pytest.fixture
    def backend(self) -> Iterator[CacheBackend]:
        backend = self.make_backend()
        try:
            yield backend
        finally:
            backend.close()

    @pytest.fixture
    def prefix(self) -> str:
        return f"llmcache-test-{uuid.uuid4().hex[:10]}:"

    def _assert_count(self, removed: int | None, expected: int) -> None:
        if self.counts_clear:
            assert removed == expected
        else:
            assert removed is None or removed == expected

    def test_get_of_missing_key_is_none(self, backend: CacheBackend, prefix: str) -> None:
        assert backend.get(prefix + "absent") is None

    def test_set_then_get_returns_the_same_bytes(self, backend: CacheBackend, prefix: str) -> None:
        value = bytes(range(256)) * 4
        backend.set(prefix + "k", value, 60)
        assert backend.get(prefix + "k") == value

    def test_set_overwrites(self, backend: CacheBackend, prefix: str) -> None:
        backend.set(prefix + "k", b"one", 60)
        backend.set(prefix + "k", b"two", 60)
        assert backend.get(prefix + "k") == b"two"

    def test_large_value_round_trips(self, backend: CacheBackend, prefix: str) -> None:
        value = uuid.uuid4().bytes * 32768  # 512 KiB that does not compress
        backend.set(prefix + "big", value, 60)
        assert backend.get(prefix + "big") == value

    def test_unusual_keys_round_trip(self, backend: CacheBackend, prefix: str) -> None:
        keys = [prefix + "sp ace", prefix + "ünï:cödé", prefix + "x" * 400, prefix + "a*b?c[d]%_\\"]
        for i, key in enumerate(keys):
            backend.set(key, b"%d" % i, 60)
        assert backend.get_many(keys) == [b"%d" % i for i in range(len(keys))]

    def test_entry_expires_after_its_ttl(self, backend: CacheBackend, prefix: str) -> None:
        ttl = max(1.0, self.ttl_resolution)
        backend.set(prefix + "short", b"v", ttl)
        backend.set(prefix + "long", b"v", 600)
        assert backend.get(prefix + "short") == b"v"
        time.sleep(ttl + self.ttl_resolution + 0.2)
        assert backend.get(prefix + "short") is None
        assert backend.get(prefix + "long") == b"v"

    def test_ttl_none_means_no_expiry(self, backend: CacheBackend, prefix: str) -> None:
        backend.set(prefix + "forever", b"v", None)
        assert backend.get(prefix + "forever") == b"v"

    def test_get_many_is_aligned_with_keys(self, backend: CacheBackend, prefix: str) -> None:
        backend.set(prefix + "a", b"1", 60)
        backend.set(prefix + "c", b"3", 60)
        keys = [prefix + "a", prefix + "b", prefix + "c", prefix + "a"]
        assert backend.get_many(keys) == [b"1", None, b"3", b"1"]
        assert backend.get_many([]) == []

    def test_set_many_stores_every_item(self, backend: CacheBackend, prefix: str) -> None:
        items = {prefix + str(i): b"v%d" % i for i in range(120)}
        backend.set_many(items, 60)
        assert backend.get_many(list(items)) == list(items.values())

    def test_delete_removes_keys_and_ignores_absent_ones(
        self, backend: CacheBackend, prefix: str
    ) -> None:
        backend.set_many({prefix + "a": b"1", prefix + "b": b"2"}, 60)
        backend.delete([prefix + "a", prefix + "absent"])
        assert backend.get_many([prefix + "a", prefix + "b"]) == [None, b"2"]

    def test_clear_by_glob_removes_only_matches(self, backend: CacheBackend, prefix: str) -> None:
        backend.set_many(
            {prefix + "user_1:x": b"1", prefix + "user_1:y": b"2", prefix + "user_2:x": b"3"}, 60
        )
        removed = backend.clear(escape(prefix) + "user_1:*")
        self._assert_count(removed, 2)
        assert backend.get_many(
            [prefix + "user_1:x", prefix + "user_1:y", prefix + "user_2:x"]
        ) == [
            None,
            None,
            b"3",
        ]

    def test_glob_question_mark_and_escapes(self, backend: CacheBackend, prefix: str) -> None:
        backend.set_many({prefix + "a1": b"1", prefix + "a22": b"2", prefix + "a*": b"3"}, 60)
        self._assert_count(backend.clear(escape(prefix) + "a?"), 2)  # a1 and a*
        assert backend.get(prefix + "a22") == b"2"
        backend.set_many({prefix + "b*": b"1", prefix + "bx": b"2", prefix + "b%_": b"3"}, 60)
        self._assert_count(backend.clear(escape(prefix + "b*")), 1)
        assert backend.get_many([prefix + "b*", prefix + "bx", prefix + "b%_"]) == [
            None,
            b"2",
            b"3",
        ]

    def test_clear_by_age_keeps_younger_entries(self, backend: CacheBackend, prefix: str) -> None:
        now = time.time()
        backend.set(prefix + "old", b"1", 600, created=now - 3600)
        backend.set(prefix + "new", b"2", 600)
        self._assert_count(backend.clear(escape(prefix) + "*", older_than=60), 1)
        assert backend.get_many([prefix + "old", prefix + "new"]) == [None, b"2"]

    def test_clear_by_glob_and_age(self, backend: CacheBackend, prefix: str) -> None:
        old = time.time() - 3600
        backend.set_many({prefix + "a:old": b"1", prefix + "b:old": b"2"}, 600, created=old)
        backend.set(prefix + "a:new", b"3", 600)
        self._assert_count(backend.clear(escape(prefix) + "a:*", older_than=60), 1)
        assert backend.get_many([prefix + "a:old", prefix + "b:old", prefix + "a:new"]) == [
            None,
            b"2",
            b"3",
        ]

    def test_clear_without_pattern_removes_everything(
        self, backend: CacheBackend, prefix: str
    ) -> None:
        backend.set_many({prefix + "a": b"1", prefix + "b": b"2"}, 60)
        removed = backend.clear()
        if self.counts_clear:
            assert removed is not None
            assert removed >= 2
        assert backend.get_many([prefix + "a", prefix + "b"]) == [None, None]

    def test_clear_of_nothing_counts_zero(self, backend: CacheBackend, prefix: str) -> None:
        self._assert_count(backend.clear(escape(prefix) + "nothing*"), 0)

    def test_shared_is_a_bool(self, backend: CacheBackend) -> None:
        assert isinstance(backend.shared, bool)


class AsyncBackendSuite(BackendSuite):
    """The same behaviour for an :class:`~llmcache.backends.base.AsyncCacheBackend`.

    Implement :meth:`make_async_backend`; it runs on the event loop the tests use.
    """

    async def make_async_backend(self) -> AsyncCacheBackend:
        """Return a fresh async backend to test (called inside the event loop)."""
        raise NotImplementedError

    @pytest.fixture
    def backend(self) -> Iterator[CacheBackend]:
        with asyncio.Runner() as runner:
            blocking = _Blocking(runner, runner.run(self.make_async_backend()))
            try:
                yield blocking
            finally:
                blocking.close()
