"""The memory tier: the conformance suite plus LRU limits."""

from __future__ import annotations

import pytest

from llmcache import ConfigError
from llmcache.backends.base import AsyncCacheBackend, CacheBackend
from llmcache.backends.memory import MemoryBackend, async_from_url, from_url
from llmcache.testing import AsyncBackendSuite, BackendSuite


class TestMemoryBackend(BackendSuite):
    def make_backend(self) -> CacheBackend:
        return from_url("memory://")


class TestAsyncMemoryBackend(AsyncBackendSuite):
    async def make_async_backend(self) -> AsyncCacheBackend:
        return async_from_url("memory://")


def test_max_entries_evicts_least_recently_used() -> None:
    store = from_url("memory://?max_entries=2")
    store.set("a", b"1", None)
    store.set("b", b"2", None)
    assert store.get("a") == b"1"  # a is now the most recently used
    store.set("c", b"3", None)
    assert store.get_many(["a", "b", "c"]) == [b"1", None, b"3"]


def test_max_bytes_evicts_until_under_the_limit() -> None:
    store = MemoryBackend(max_bytes=10)
    store.set("a", b"12345", None)
    store.set("b", b"12345", None)
    store.set("c", b"123", None)
    assert store.get("a") is None
    assert store.nbytes == 8
    assert len(store) == 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://?max_entries=0", "max_entries='0'"),
        ("memory://?max_bytes=lots", "max_bytes='lots'"),
        ("memory://?size=3", "unknown option 'size'"),
    ],
    ids=["zero-entries", "bad-bytes", "unknown-option"],
)
def test_bad_memory_url_names_the_option(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_url(url)
