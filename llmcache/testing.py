"""A conformance suite for cache backends, for llmcache's adapters and third-party ones.

Subclass :class:`BackendSuite` (sync backends) or :class:`AsyncBackendSuite` (async ones) in
a test module and implement the factory; pytest collects every test below for your backend.
The backend may subclass :class:`~llmcache.backends.base.BaseCacheBackend` or just have the
four required methods: the suite tests it the way tiers use it (optional methods filled in
with their defaults), checks every optional capability it claims (creation times, locks,
listing), and makes one round trip through ``CachedClient``, sync and async::

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

from llmcache.backends.base import AsyncCacheBackend, BaseCacheBackend, CacheBackend, StoredEntry
from llmcache.backends.capabilities import Capabilities, conform
from llmcache.backends.globs import escape

__all__ = ["AsyncBackendSuite", "BackendSuite"]

T = TypeVar("T")


class _Blocking(BaseCacheBackend):
    """Drive an async backend from sync test code, on one event loop of its own."""

    def __init__(self, runner: asyncio.Runner, backend: Any) -> None:
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

    def scan(self, pattern: str | None = None) -> Iterator[StoredEntry]:
        return iter(self._run(_collect(self.inner.scan(pattern))))

    def try_lock(self, name: str, ttl: float) -> str | None:
        return self._run(self.inner.try_lock(name, ttl))  # type: ignore[no-any-return]

    def unlock(self, name: str, token: str) -> None:
        self._run(self.inner.unlock(name, token))


async def _collect(entries: Any) -> list[StoredEntry]:
    if hasattr(entries, "__aiter__"):
        return [entry async for entry in entries]
    return list(await entries if asyncio.iscoroutine(entries) else entries)


class _Awaiting:
    """An async backend built on its first call, inside the event loop that awaits it (the
    suite's ``make_async_backend`` is a coroutine; a tier factory is not)."""

    awaits = "task"

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._backend: Any = None

    async def _ready(self) -> Any:
        if self._backend is None:
            self._backend, _ = conform(await self._make(), is_async=True)
        return self._backend

    async def get(self, key: str) -> bytes | None:
        return await (await self._ready()).get(key)  # type: ignore[no-any-return]

    async def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        await (await self._ready()).set(key, value, ttl, created=created)

    async def delete(self, keys: Sequence[str]) -> None:
        await (await self._ready()).delete(keys)

    async def clear(
        self, pattern: str | None = None, older_than: float | None = None
    ) -> int | None:
        return await (await self._ready()).clear(pattern, older_than)  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()


class BackendSuite:
    """The behaviour every :class:`~llmcache.backends.base.CacheBackend` must show.

    :cvar ttl_resolution: the store's expiry granularity in seconds (memcached: 1).
    :cvar counts_clear: ``clear`` returns a count (``False`` for stores that cannot count).
    """

    ttl_resolution: float = 0.1
    counts_clear: bool = True
    sync_round_trip = True

    def make_backend(self) -> Any:
        """Return a fresh backend to test."""
        raise NotImplementedError

    @pytest.fixture
    def conformed(self) -> Iterator[tuple[Any, Capabilities]]:
        """The backend as a tier sees it (optional methods filled in) and what it claims."""
        made = self.make_backend()
        assert isinstance(made, CacheBackend), "get, set, delete and clear are required"
        backend, caps = conform(made, is_async=False)
        try:
            yield backend, caps
        finally:
            backend.close()

    @pytest.fixture
    def backend(self, conformed: tuple[Any, Capabilities]) -> Any:
        return conformed[0]

    @pytest.fixture
    def caps(self, conformed: tuple[Any, Capabilities]) -> Capabilities:
        return conformed[1]

    @pytest.fixture
    def prefix(self) -> str:
        return f"llmcache-test-{uuid.uuid4().hex[:10]}:"

    def _assert_count(self, removed: int | None, expected: int) -> None:
        if self.counts_clear:
            assert removed == expected
        else:
            assert removed is None or removed == expected

    def test_get_of_missing_key_is_none(self, backend: Any, prefix: str) -> None:
        assert backend.get(prefix + "absent") is None

    def test_set_then_get_returns_the_same_bytes(self, backend: Any, prefix: str) -> None:
        value = bytes(range(256)) * 4
        backend.set(prefix + "k", value, 60)
        assert backend.get(prefix + "k") == value

    def test_set_overwrites(self, backend: Any, prefix: str) -> None:
        backend.set(prefix + "k", b"one", 60)
        backend.set(prefix + "k", b"two", 60)
        assert backend.get(prefix + "k") == b"two"

    def test_large_value_round_trips(self, backend: Any, prefix: str) -> None:
        value = uuid.uuid4().bytes * 32768  # 512 KiB that does not compress
        backend.set(prefix + "big", value, 60)
        assert backend.get(prefix + "big") == value

    def test_unusual_keys_round_trip(self, backend: Any, prefix: str) -> None:
        keys = [prefix + "sp ace", prefix + "ünï:cödé", prefix + "x" * 400, prefix + "a*b?c[d]%_\\"]
        for i, key in enumerate(keys):
            backend.set(key, b"%d" % i, 60)
        assert backend.get_many(keys) == [b"%d" % i for i in range(len(keys))]

    def test_entry_expires_after_its_ttl(self, backend: Any, prefix: str) -> None:
        ttl = max(1.0, self.ttl_resolution)
        backend.set(prefix + "short", b"v", ttl)
        backend.set(prefix + "long", b"v", 600)
        assert backend.get(prefix + "short") == b"v"
        time.sleep(ttl + self.ttl_resolution + 0.2)
        assert backend.get(prefix + "short") is None
        assert backend.get(prefix + "long") == b"v"

    def test_ttl_none_means_no_expiry(self, backend: Any, prefix: str) -> None:
        backend.set(prefix + "forever", b"v", None)
        assert backend.get(prefix + "forever") == b"v"

    def test_get_many_is_aligned_with_keys(self, backend: Any, prefix: str) -> None:
        backend.set(prefix + "a", b"1", 60)
        backend.set(prefix + "c", b"3", 60)
        keys = [prefix + "a", prefix + "b", prefix + "c", prefix + "a"]
        assert backend.get_many(keys) == [b"1", None, b"3", b"1"]
        assert backend.get_many([]) == []

    def test_set_many_stores_every_item(self, backend: Any, prefix: str) -> None:
        items = {prefix + str(i): b"v%d" % i for i in range(120)}
        backend.set_many(items, 60)
        assert backend.get_many(list(items)) == list(items.values())

    def test_delete_removes_keys_and_ignores_absent_ones(self, backend: Any, prefix: str) -> None:
        backend.set_many({prefix + "a": b"1", prefix + "b": b"2"}, 60)
        backend.delete([prefix + "a", prefix + "absent"])
        assert backend.get_many([prefix + "a", prefix + "b"]) == [None, b"2"]

    def test_clear_by_glob_removes_only_matches(self, backend: Any, prefix: str) -> None:
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

    def test_glob_question_mark_and_escapes(self, backend: Any, prefix: str) -> None:
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

    def test_clear_by_age_keeps_younger_entries(
        self, backend: Any, caps: Capabilities, prefix: str
    ) -> None:
        if not caps.creation_times:  # without them, every entry is as old as its write
            backend.set(prefix + "new", b"2", 600)
            self._assert_count(backend.clear(escape(prefix) + "*", older_than=60), 0)
            assert backend.get(prefix + "new") == b"2"
            return
        now = time.time()
        backend.set(prefix + "old", b"1", 600, created=now - 3600)
        backend.set(prefix + "new", b"2", 600)
        self._assert_count(backend.clear(escape(prefix) + "*", older_than=60), 1)
        assert backend.get_many([prefix + "old", prefix + "new"]) == [None, b"2"]

    def test_clear_by_glob_and_age(self, backend: Any, caps: Capabilities, prefix: str) -> None:
        if not caps.creation_times:
            backend.set(prefix + "a:new", b"3", 600)
            time.sleep(0.05)
            self._assert_count(backend.clear(escape(prefix) + "a:*", older_than=0), 1)
            return
        old = time.time() - 3600
        backend.set_many({prefix + "a:old": b"1", prefix + "b:old": b"2"}, 600, created=old)
        backend.set(prefix + "a:new", b"3", 600)
        self._assert_count(backend.clear(escape(prefix) + "a:*", older_than=60), 1)
        assert backend.get_many([prefix + "a:old", prefix + "b:old", prefix + "a:new"]) == [
            None,
            b"2",
            b"3",
        ]

    def test_clear_without_pattern_removes_everything(self, backend: Any, prefix: str) -> None:
        backend.set_many({prefix + "a": b"1", prefix + "b": b"2"}, 60)
        removed = backend.clear()
        if self.counts_clear:
            assert removed is not None
            assert removed >= 2
        assert backend.get_many([prefix + "a", prefix + "b"]) == [None, None]

    def test_clear_of_nothing_counts_zero(self, backend: Any, prefix: str) -> None:
        self._assert_count(backend.clear(escape(prefix) + "nothing*"), 0)

    def test_shared_is_a_bool(self, backend: Any) -> None:
        assert isinstance(backend.shared, bool)

    # -- the capabilities a backend claims ---------------------------------------------------

    def test_claimed_locks_exclude_each_other_and_expire(
        self, backend: Any, caps: Capabilities, prefix: str
    ) -> None:
        if not caps.locks:
            assert not backend.supports_locks  # the core never asks it for one
            return
        token = backend.try_lock(prefix + "lock", 1.0)
        assert token is not None
        assert backend.try_lock(prefix + "lock", 1.0) is None
        backend.unlock(prefix + "lock", "not-the-token")
        assert backend.try_lock(prefix + "lock", 1.0) is None  # only the holder unlocks
        backend.unlock(prefix + "lock", token)
        again = backend.try_lock(prefix + "lock", max(1.0, self.ttl_resolution))
        assert again is not None
        time.sleep(max(1.0, self.ttl_resolution) + self.ttl_resolution + 0.2)
        assert backend.try_lock(prefix + "lock", 1.0) is not None  # a dead holder's expired

    def test_claimed_listing_reports_what_is_stored(
        self, backend: Any, caps: Capabilities, prefix: str
    ) -> None:
        if not caps.listing:
            assert not backend.supports_scan
            return
        backend.set_many({prefix + "a": b"12345", prefix + "b": b"1"}, 60)
        found = {entry.key: entry for entry in backend.scan(escape(prefix) + "*")}
        assert set(found) == {prefix + "a", prefix + "b"}
        assert found[prefix + "a"].size >= 5
        assert all(isinstance(entry, StoredEntry) for entry in found.values())

    def test_claimed_creation_times_are_kept(
        self, backend: Any, caps: Capabilities, prefix: str
    ) -> None:
        if not caps.creation_times:
            backend.set(prefix + "k", b"v", 60, created=time.time() - 3600)  # dropped, not an error
            assert backend.get(prefix + "k") == b"v"
            return
        backend.set(prefix + "old", b"v", 600, created=time.time() - 3600)
        self._assert_count(backend.clear(escape(prefix) + "old", older_than=1800), 1)

    # -- one round trip through CachedClient ------------------------------------------------

    def _plugin(self, scheme: str) -> Any:
        from llmcache.hookspecs import hookimpl

        suite = self

        class Plugin:
            @hookimpl
            def llmcache_register_backends(self, register: Any) -> None:
                register(scheme, lambda url: suite.make_backend(), async_factory=suite._async())

        return Plugin()

    def _async(self) -> Any:
        return None  # async clients run the sync backend in a worker thread

    def test_a_round_trip_through_cached_client(self) -> None:
        openai = pytest.importorskip("openai", reason="the round trip wraps an OpenAI client")
        from llmcache._wrapper.client import CachedClient
        from llmcache.tools.simulator import Simulator

        scheme = "conformance" + uuid.uuid4().hex[:8]
        ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        with Simulator() as sim:
            if self.sync_round_trip:
                sdk = openai.OpenAI(api_key="x", base_url=sim.base_url, max_retries=0)
                tiers = [f"{scheme}://"]
                with CachedClient(sdk, tiers=tiers, plugins=[self._plugin(scheme)]) as c:
                    c.chat.completions.create(**ask, cache_key=scheme)
                    hit = c.chat.completions.create(**ask, cache_key=scheme)
                    assert hit.cache_hit, "a sync client's second call was not a hit"
                    assert c.stats().errors == 0
                    c.clear_cache(key=f"{scheme}:*")

            async def round_trip() -> None:
                sdk = openai.AsyncOpenAI(api_key="x", base_url=sim.base_url, max_retries=0)
                plugin = self._plugin(scheme)
                client: Any = CachedClient(sdk, tiers=[f"{scheme}://"], plugins=[plugin])
                async with client as c:
                    await c.chat.completions.create(**ask, cache_key=scheme + "-async")
                    hit = await c.chat.completions.create(**ask, cache_key=scheme + "-async")
                    assert hit.cache_hit, "an async client's second call was not a hit"
                    assert c.stats().errors == 0
                    await c.clear_cache(key=f"{scheme}-async:*")

            asyncio.run(round_trip())
            assert sim.count() == (2 if self.sync_round_trip else 1)


class AsyncBackendSuite(BackendSuite):
    """The same behaviour for an :class:`~llmcache.backends.base.AsyncCacheBackend`.

    Implement :meth:`make_async_backend`; it runs on the event loop the tests use.
    """

    async def make_async_backend(self) -> Any:
        """Return a fresh async backend to test (called inside the event loop)."""
        raise NotImplementedError

    @pytest.fixture
    def conformed(self) -> Iterator[tuple[Any, Capabilities]]:
        with asyncio.Runner() as runner:
            made = runner.run(self.make_async_backend())
            assert isinstance(made, AsyncCacheBackend), "get, set, delete, clear are required"
            backend, caps = conform(made, is_async=True)
            blocking = _Blocking(runner, backend)
            blocking.supports_locks = caps.locks  # type: ignore[misc]
            blocking.supports_scan = caps.listing  # type: ignore[misc]
            try:
                yield blocking, caps
            finally:
                blocking.close()

    def _async(self) -> Any:
        return lambda url: _Awaiting(self.make_async_backend)

    sync_round_trip = False  # an async backend has no sync twin to serve a sync client
