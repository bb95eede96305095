"""Small but real backends registered as plugins by the tests.

``sharedmem://name`` is a memory store that declares itself shared and is the same store
for every client naming it, as a Redis or SQL tier would be. ``broken://`` is a backend
whose every call fails, for fail-open and circuit-breaker tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from llmcache import CacheBackend, hookimpl
from llmcache.backends.base import SyncToAsync
from llmcache.backends.memory import MemoryBackend


class SharedMemoryBackend(MemoryBackend):
    shared = True


STORES: dict[str, SharedMemoryBackend] = {}


def shared_store(url: str, **options: Any) -> SharedMemoryBackend:
    name = urlsplit(url).netloc
    return STORES.setdefault(name, SharedMemoryBackend())


class BrokenBackend(CacheBackend):
    """A tier that is down: every call raises, and ``calls`` counts the attempts."""

    shared = True

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self) -> Any:
        self.calls += 1
        raise ConnectionError("connection refused by broken://")

    def get(self, key: str) -> bytes | None:
        return self._fail()  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._fail()  # type: ignore[no-any-return]

    def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        self._fail()

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        self._fail()

    def delete(self, keys: Sequence[str]) -> None:
        self._fail()

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int | None:
        return self._fail()  # type: ignore[no-any-return]


BROKEN: list[BrokenBackend] = []


def broken(url: str, **options: Any) -> BrokenBackend:
    backend = BrokenBackend()
    BROKEN.append(backend)
    return backend


class TestBackends:
    """A plugin object, as a third-party package would ship one."""

    @hookimpl
    def llmcache_register_backends(self, register: Any) -> None:
        register(
            "sharedmem",
            shared_store,
            async_factory=lambda url, **o: SyncToAsync(shared_store(url), in_thread=False),
        )
        register("broken", broken)


__test__ = False  # pytest: this module holds no tests
