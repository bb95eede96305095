"""The floor of a cache hit: the least work any cache must do to answer from a given store.

A floor call computes the same key digest as the client (``request_digest`` of the same
``CacheRequest``), reads the same stored bytes with the store's raw driver (no llmcache
code), unpacks them with msgpack (the envelope and the codec's inner body) and validates
the payload into the SDK's ``ChatCompletion`` (``model_validate_json`` when the entry holds
the response's JSON text, as entries written by a miss through the OpenAI SDK do).
Everything llmcache does on top (options, planning, tiers, breakers, envelope checks,
statistics, the ``cache_*`` attributes) is what the ratio against this floor measures.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgpack
from openai.types.chat import ChatCompletion

from llmcache._rules.keys import physical_key, request_digest
from llmcache._rules.request import CacheOptions, CacheRequest

__all__ = [
    "ClusterStore",
    "DictStore",
    "MemcachedStore",
    "PostgresStore",
    "RawStore",
    "RedisStore",
    "SQLiteStore",
    "async_floor",
    "decode_payload",
    "floor_key",
    "sync_floor",
]

_ZLIB, _INLINE = 1, 2  # the codec's body markers (last field of the envelope's header)
_OPTIONS = CacheOptions()


class RawStore(Protocol):
    """A store's raw driver, reading values by the physical key llmcache wrote them under."""

    def get(self, key: str) -> bytes | None:
        """Return the stored bytes."""

    async def aget(self, key: str) -> bytes | None:
        """Return the stored bytes, through the driver's asyncio client where one exists."""

    def close(self) -> None:
        """Release connections."""

    async def aclose(self) -> None:
        """Release asyncio connections."""


def decode_payload(data: bytes) -> Any:
    """Unpack an llmcache entry's payload with msgpack alone (envelope, then inner body).

    :return: plain data, or the JSON text of a ``"json"`` entry.
    """
    _magic, _version, header, body, _signature = msgpack.unpackb(data)
    if header[7] != _INLINE:  # the body codec (optional token counts may follow)
        if header[7] == _ZLIB:
            body = zlib.decompress(body)
        body = msgpack.unpackb(body)
    return body


def _validator() -> Callable[[Any], ChatCompletion]:
    """``model_validate`` for plain data, ``model_validate_json`` for JSON text."""
    validate, validate_json = ChatCompletion.model_validate, ChatCompletion.model_validate_json

    def build(payload: Any) -> ChatCompletion:
        return validate_json(payload) if type(payload) is bytes else validate(payload)

    return build


def floor_key(params: Mapping[str, Any], namespace: str, provider: str) -> str:
    """Return the physical key the client computes for ``params``."""
    request = CacheRequest("chat.completions", params, _OPTIONS, namespace, provider)
    return physical_key(namespace, request_digest(request))


def sync_floor(
    params: Mapping[str, Any], namespace: str, provider: str, get: Callable[[str], bytes | None]
) -> Callable[[], ChatCompletion]:
    """Return the floor call: digest, raw read, msgpack unpack, ``model_validate``."""
    validate = _validator()

    def floor() -> ChatCompletion:
        request = CacheRequest("chat.completions", params, _OPTIONS, namespace, provider)
        data = get(physical_key(namespace, request_digest(request)))
        assert data is not None
        return validate(decode_payload(data))

    return floor


def async_floor(
    params: Mapping[str, Any],
    namespace: str,
    provider: str,
    get: Callable[[str], Awaitable[bytes | None]],
) -> Callable[[], Awaitable[ChatCompletion]]:
    """The asyncio twin of :func:`sync_floor`."""
    validate = _validator()

    async def floor() -> ChatCompletion:
        request = CacheRequest("chat.completions", params, _OPTIONS, namespace, provider)
        data = await get(physical_key(namespace, request_digest(request)))
        assert data is not None
        return validate(decode_payload(data))

    return floor


class DictStore:
    """The floor of an in-process tier: a dict lookup of the same bytes."""

    def __init__(self, items: Mapping[str, bytes]) -> None:
        self.items = dict(items)

    def get(self, key: str) -> bytes | None:
        return self.items.get(key)

    async def aget(self, key: str) -> bytes | None:
        return self.items.get(key)

    def close(self) -> None:
        self.items.clear()

    async def aclose(self) -> None:
        self.close()


class RedisStore:
    """``GET`` with a plain ``redis.Redis`` (sync) and ``redis.asyncio.Redis``."""

    def __init__(self, host: str, port: int) -> None:
        import redis

        self.host, self.port = host, port
        self.client = redis.Redis(host=host, port=port)
        self._async: Any = None

    def get(self, key: str) -> bytes | None:
        return self.client.get(key)  # type: ignore[no-any-return]

    async def aget(self, key: str) -> bytes | None:
        if self._async is None:
            import redis.asyncio

            self._async = redis.asyncio.Redis(host=self.host, port=self.port)
        return await self._async.get(key)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None


class ClusterStore(RedisStore):
    """``GET`` with a plain ``redis.cluster.RedisCluster`` and its asyncio twin."""

    def __init__(self, host: str, port: int) -> None:
        from redis.cluster import RedisCluster

        self.host, self.port = host, port
        self.client = RedisCluster(host=host, port=port)  # type: ignore[assignment]
        self._async = None

    async def aget(self, key: str) -> bytes | None:
        if self._async is None:
            from redis.asyncio.cluster import RedisCluster

            self._async = RedisCluster(host=self.host, port=self.port)
        return await self._async.get(key)  # type: ignore[no-any-return]


class SQLiteStore:
    """``SELECT value FROM <table> WHERE key = ?`` with ``sqlite3`` (sync) and aiosqlite."""

    def __init__(self, path: str, table: str = "llmcache_entries") -> None:
        self.path = path
        self.sql = f"SELECT value FROM {table} WHERE key = ?"
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._async: Any = None

    def get(self, key: str) -> bytes | None:
        row = self.conn.execute(self.sql, (key,)).fetchone()
        return None if row is None else bytes(row[0])

    async def aget(self, key: str) -> bytes | None:
        if self._async is None:
            import aiosqlite

            self._async = await aiosqlite.connect(self.path, isolation_level=None)
        async with self._async.execute(self.sql, (key,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self.conn.close()

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.close()
            self._async = None


class PostgresStore:
    """``SELECT value FROM <table> WHERE key = %s`` with psycopg (sync and asyncio)."""

    def __init__(self, dsn: str, table: str) -> None:
        import psycopg

        self.dsn = dsn
        self.sql = f"SELECT value FROM {table} WHERE key = %s"
        self.conn = psycopg.connect(dsn, autocommit=True)
        self._async: Any = None

    def get(self, key: str) -> bytes | None:
        row = self.conn.execute(self.sql, (key,)).fetchone()
        return None if row is None else bytes(row[0])

    async def aget(self, key: str) -> bytes | None:
        if self._async is None:
            import psycopg

            self._async = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        cursor = await self._async.execute(self.sql, (key,))
        row = await cursor.fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self.conn.close()

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.close()
            self._async = None


class MemcachedStore:
    """``get`` with a plain pymemcache ``Client``, of the core's bytes stored under their key.

    llmcache's memcached values carry a header of their own, so the floor stores the core's
    bytes (what every other store holds) under the physical key, prefixed ``floor:``.
    pymemcache has no asyncio client: the async floor calls the sync one.
    """

    def __init__(self, host: str, port: int) -> None:
        from pymemcache.client.base import Client

        self.client = Client((host, port), connect_timeout=2, timeout=2)

    def put(self, key: str, value: bytes) -> None:
        """Store the core's bytes for ``key``."""
        self.client.set("floor:" + key, value, noreply=False)

    def get(self, key: str) -> bytes | None:
        return self.client.get("floor:" + key)  # type: ignore[no-any-return]

    async def aget(self, key: str) -> bytes | None:
        return self.client.get("floor:" + key)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        self.close()
