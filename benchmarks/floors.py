"""The floor of a cache hit: the least work any cache must do to answer from a given store.

The **physical floor** is the fastest simple way to do a hit's job with no llmcache code at
all: the request's canonical JSON (``orjson`` with sorted keys) hashed with BLAKE2b into a
key, the store's raw driver reading the answer's bytes under that key (the response's JSON,
stored there by the floor itself, beside the tier's entries), and
``ChatCompletion.model_validate_json`` of them. A slow key or a heavy envelope in llmcache
shows in the ratio against it.

The **envelope floor** (the one hits were held to before) reads the very bytes the tier
holds: the same key digest as the client (``request_digest`` of the same ``CacheRequest``),
the raw read, a msgpack unpack of the envelope (and of the codec's inner body) and the
payload's validation. It leaves out what llmcache's own key and envelope cost, and is
reported beside the physical floor as a second ratio.

The asyncio floors read through each driver's asyncio client; memcached's, which has none
among the drivers llmcache uses, through :class:`StreamMemcached`, a minimal asyncio ``get``
on one socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgpack
import orjson
from openai.types.chat import ChatCompletion

from llmcache import CacheOptions, CacheRequest, request_digest
from llmcache.backends import physical_key

__all__ = [
    "FLOOR_TABLE",
    "ClusterStore",
    "DictStore",
    "MemcachedStore",
    "PostgresStore",
    "RawStore",
    "RedisStore",
    "SQLiteStore",
    "StreamMemcached",
    "async_envelope_floor",
    "async_physical_floor",
    "decode_payload",
    "envelope_floor",
    "floor_key",
    "physical_digest",
    "physical_floor",
]

_ZLIB, _INLINE = 1, 2  # the codec's body markers (last field of the envelope's header)
_OPTIONS = CacheOptions()
FLOOR_TABLE = "llmcache_floor"  # the SQL floors' own table, beside the tier's


class RawStore(Protocol):
    """A store's raw driver, reading values by key."""

    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (the physical floor's answer)."""

    def get(self, key: str) -> bytes | None:
        """Return the stored bytes."""

    async def aget(self, key: str) -> bytes | None:
        """Return the stored bytes, through the driver's asyncio client."""

    def close(self) -> None:
        """Release connections."""

    async def aclose(self) -> None:
        """Release asyncio connections."""


def physical_digest(params: Mapping[str, Any]) -> str:
    """Return the physical floor's key: BLAKE2b of the request's canonical JSON."""
    canonical = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
    return "floor:" + hashlib.blake2b(canonical, digest_size=16).hexdigest()


def physical_floor(
    params: Mapping[str, Any], get: Callable[[str], bytes | None]
) -> Callable[[], ChatCompletion]:
    """Return the physical floor call: canonical JSON, BLAKE2b, raw read, validation."""
    validate = ChatCompletion.model_validate_json

    def floor() -> ChatCompletion:
        data = get(physical_digest(params))
        assert data is not None
        return validate(data)

    return floor


def async_physical_floor(
    params: Mapping[str, Any], get: Callable[[str], Awaitable[bytes | None]]
) -> Callable[[], Awaitable[ChatCompletion]]:
    """The asyncio twin of :func:`physical_floor`."""
    validate = ChatCompletion.model_validate_json

    async def floor() -> ChatCompletion:
        data = await get(physical_digest(params))
        assert data is not None
        return validate(data)

    return floor


def decode_payload(data: bytes) -> Any:
    """Unpack an llmcache entry's payload with msgpack alone (envelope, then inner body).

    :return: plain data, or the JSON text of a ``"json"`` entry.
    """
    _magic, _version, header, body, _signature = msgpack.unpackb(data)
    codec = header[7] % 8  # the body codec (8 is added for a null-free entry)
    if codec != _INLINE:
        if codec == _ZLIB:
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


def envelope_floor(
    params: Mapping[str, Any], namespace: str, provider: str, get: Callable[[str], bytes | None]
) -> Callable[[], ChatCompletion]:
    """Return the envelope floor call: llmcache's digest, raw read, msgpack, validation."""
    validate = _validator()

    def floor() -> ChatCompletion:
        request = CacheRequest("chat.completions", params, _OPTIONS, namespace, provider)
        data = get(physical_key(namespace, request_digest(request)))
        assert data is not None
        return validate(decode_payload(data))

    return floor


def async_envelope_floor(
    params: Mapping[str, Any],
    namespace: str,
    provider: str,
    get: Callable[[str], Awaitable[bytes | None]],
) -> Callable[[], Awaitable[ChatCompletion]]:
    """The asyncio twin of :func:`envelope_floor`."""
    validate = _validator()

    async def floor() -> ChatCompletion:
        request = CacheRequest("chat.completions", params, _OPTIONS, namespace, provider)
        data = await get(physical_key(namespace, request_digest(request)))
        assert data is not None
        return validate(decode_payload(data))

    return floor


class DictStore:
    """The floor of an in-process tier: a dict lookup."""

    def __init__(self, items: Mapping[str, bytes] | None = None) -> None:
        self.items = dict(items or {})

    def put(self, key: str, value: bytes) -> None:
        self.items[key] = value

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

    def put(self, key: str, value: bytes) -> None:
        self.client.set(key, value)

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
    """``SELECT value FROM <table> WHERE key = ?`` with ``sqlite3`` (sync) and aiosqlite.

    :param table: the tier's table (the envelope floor) or :data:`FLOOR_TABLE`, which
        :meth:`put` creates (the physical floor).
    """

    def __init__(self, path: str, table: str = "llmcache_entries") -> None:
        self.path, self.table = path, table
        self.sql = f"SELECT value FROM {table} WHERE key = ?"
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._async: Any = None

    def put(self, key: str, value: bytes) -> None:
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
        )
        self.conn.execute(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?)", (key, value))

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
    """``SELECT value FROM <table> WHERE key = %s`` with psycopg (sync and asyncio).

    :param table: the tier's table (the envelope floor) or a table of the floor's own,
        which :meth:`put` creates (the physical floor).
    """

    def __init__(self, dsn: str, table: str) -> None:
        import psycopg

        self.dsn, self.table = dsn, table
        self.sql = f"SELECT value FROM {table} WHERE key = %s"
        self.conn = psycopg.connect(dsn, autocommit=True)
        self._async: Any = None

    def put(self, key: str, value: bytes) -> None:
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, value BYTEA NOT NULL)"
        )
        self.conn.execute(
            f"INSERT INTO {self.table} VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (key, value),
        )

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


class StreamMemcached:
    """A minimal asyncio memcached ``get``: one socket, asyncio streams, no pool, no checks.

    It writes ``get <key>``, reads the ``VALUE <key> <flags> <bytes>`` line, the value and
    its CRLF, then ``END``: the least an asyncio client can do for one value.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, key: str) -> bytes | None:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(b"get " + key.encode() + b"\r\n")
        await writer.drain()
        line = await reader.readline()
        if line == b"END\r\n":
            return None
        if not line.startswith(b"VALUE "):
            raise ConnectionError(f"memcached answered {line[:40]!r}")
        data = await reader.readexactly(int(line.split()[3]) + 2)
        if await reader.readexactly(5) != b"END\r\n":
            raise ConnectionError("memcached sent more than one value")
        return data[:-2]

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            await writer.wait_closed()


class MemcachedStore:
    """``get`` with a plain pymemcache ``Client`` (sync) and :class:`StreamMemcached` (async).

    llmcache's memcached values carry a header of their own, so the envelope floor stores
    the core's bytes (what every other store holds) under the physical key, prefixed
    ``floor:``, with :meth:`put`, as the physical floor stores its answer.
    """

    def __init__(self, host: str, port: int) -> None:
        from pymemcache.client.base import Client

        self.client = Client((host, port), connect_timeout=2, timeout=2)
        self.stream = StreamMemcached(host, port)

    def put(self, key: str, value: bytes) -> None:
        self.client.set(key, value, noreply=False)

    def get(self, key: str) -> bytes | None:
        return self.client.get(key)  # type: ignore[no-any-return]

    async def aget(self, key: str) -> bytes | None:
        return await self.stream.get(key)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        await self.stream.close()
