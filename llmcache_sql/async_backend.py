"""The asyncio SQL tier, on SQLAlchemy's asyncio extension.

The twin of :class:`~llmcache_sql.backend.SQLBackend`: the same tables, the same
statements (compiled once for the asyncio dialect and run with ``exec_driver_sql``), the
same bounded purge. On SQLite, reads go to one pinned aiosqlite connection in a single
call; on PostgreSQL with psycopg, to psycopg's own connections (:mod:`llmcache_sql.readers`).
Drivers: aiosqlite, psycopg's asyncio flavour or asyncpg, aiomysql.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmcache.backends.base import BaseAsyncCacheBackend

from . import watchdog
from .config import SQLConfig
from .engines import WATCH_SHARE, async_engine
from .readers import DIRECT_DRIVERS, Readers
from .schema import (
    Schema,
    build_schema,
    ensure_schema,
    entry_row,
    key_text,
    storage_key,
    value_bytes,
)
from .statements import MANY_CHUNK, Statements, padded
from .vectors import VectorStatements, ensure_vectors, not_found
from .watchdog import Alarm

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["AsyncSQLBackend"]

log = logging.getLogger("llmcache.sql")


class AsyncSQLBackend(BaseAsyncCacheBackend):
    """A cache tier in a SQL table, for asyncio clients.

    Build it with :func:`llmcache_sql.plugin.async_from_url`; nothing connects before the
    first call, which creates the tables if they are missing.

    :param config: the parsed tier URL (with an asyncio driver).
    """

    shared = True
    supports_locks = True

    def __init__(self, config: SQLConfig) -> None:
        self.config = config
        self.schema: Schema = build_schema(config.table, config.family)
        self.engine = async_engine(config)
        self._statements: Statements | None = None
        self._next_purge = 0.0
        self._purging = False
        self._watched = config.family == "postgresql"
        self._reader: Any = None  # SQLite: the aiosqlite connection reads go to
        self._reader_conn: AsyncConnection | None = None
        self._vector_sql: dict[int, VectorStatements | None] = {}  # dim -> pgvector's, or None
        self._readers: Readers | None = None  # PostgreSQL with psycopg: reads on its own
        driver = config.driver.name if config.driver is not None else None
        if config.family == "postgresql" and driver in DIRECT_DRIVERS:
            keep = max(1, config.pool_size // 2)  # the rest of the pool stays for writes
            self._readers = Readers(self.engine, config.timeout, WATCH_SHARE, keep)
            # a read keeps to the timeout by itself (see Readers): no timeout task per hit
            self.awaits = "bounded-reads"  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<AsyncSQLBackend {self.config.redacted} table={self.schema.name}>"

    async def _prepare(self) -> Statements:
        """Create the tables if needed and compile the statements (first call only).

        Two coroutines may both get here on a fresh tier; the creation is idempotent.
        """
        if self._statements is not None:
            return self._statements
        database = self.engine.url.database
        if self.config.family == "sqlite" and database and not self.engine.url.query.get("uri"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        async with asyncio.timeout(self.config.timeout), self.engine.connect() as conn:
            await conn.run_sync(ensure_schema, self.schema, self.config.timeout)
        statements = Statements(self.schema, self.engine.dialect, self.config.purge_batch)
        self._statements = statements
        return statements

    async def _run(self, sql: str, args: Any, *, fetch: bool = False) -> Any:
        async with self.engine.connect() as conn:
            alarm = await self._arm(conn)
            try:
                result = await conn.exec_driver_sql(sql, args)
            finally:
                if alarm is not None and watchdog.watchdog.disarm(alarm):
                    await conn.invalidate()  # its socket was cut: never back to the pool
            return result.fetchall() if fetch else result.rowcount

    async def _read(self, sql: str, args: Any) -> list[Any]:
        """Run a ``SELECT``: on SQLite on the reader connection, in one thread hop; on
        PostgreSQL with psycopg on a reader of :class:`Readers`."""
        if self._readers is not None:
            return await self._readers.read(sql, args)
        if self.config.family != "sqlite":
            return list(await self._run(sql, args, fetch=True))
        reader = self._reader or await self._open_reader()
        try:
            return list(await reader.execute_fetchall(sql, args))
        except Exception:
            await self._drop_reader(broken=True)
            raise

    async def _open_reader(self) -> Any:
        """Pin one pooled SQLite connection for reads (aiosqlite serves it on one thread).

        Reads then skip the pool and SQLAlchemy's execution layer: each is one call on
        aiosqlite's thread, where the pool and a full ``exec_driver_sql`` take several.
        Writes keep to the pool, so a long purge or clear never holds reads up.
        """
        conn = await self.engine.connect()
        try:
            driver = (await conn.get_raw_connection()).driver_connection
        except BaseException:
            await conn.close()
            raise
        if self._reader is not None:  # another coroutine opened one meanwhile
            await conn.close()
            return self._reader
        self._reader, self._reader_conn = driver, conn
        return driver

    async def _drop_reader(self, *, broken: bool = False) -> None:
        conn, self._reader, self._reader_conn = self._reader_conn, None, None
        if conn is not None:
            if broken:
                await conn.invalidate()
            await conn.close()

    async def _arm(self, conn: AsyncConnection) -> Alarm | None:
        """Bound a PostgreSQL call on the client side, a little before the tier's timeout.

        The client cancels a call at the timeout, and psycopg answers a cancellation by
        asking the server to cancel the query, over the network that is failing (up to
        10 s). Cutting the socket first makes psycopg fail at once instead.
        """
        if not self._watched:
            return None
        found = watchdog.socket_of(await conn.get_raw_connection())
        if found is None:
            return None
        fd, inode = found
        return watchdog.watchdog.arm(fd, self.config.timeout * WATCH_SHARE, inode)

    async def _run_batch(self, sql: str, rows: list[Any]) -> None:
        if self.config.family != "sqlite":
            await self._run(sql, rows)
            return
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")  # see SQLBackend._run_batch
            try:
                await conn.exec_driver_sql(sql, rows)
            except BaseException:
                # a cancelled call is rolled back by the pool when the connection returns
                await conn.exec_driver_sql("ROLLBACK")
                raise
            await conn.exec_driver_sql("COMMIT")

    # -- the contract --------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        statements = self._statements or await self._prepare()
        stored, full = storage_key(key, self.schema.key_limit)
        if full is None:
            rows = await self._read(statements.get.sql, statements.get_args(stored, time.time()))
        else:
            args = statements.get_long_args(stored, full, time.time())
            rows = await self._read(statements.get_long.sql, args)
        return value_bytes(rows[0][0]) if rows else None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        statements = self._statements or await self._prepare()
        now = time.time()
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(keys))
        limit = self.schema.key_limit
        for start in range(0, len(unique), MANY_CHUNK):
            stored = [storage_key(k, limit)[0] for k in unique[start : start + MANY_CHUNK]]
            prepared, width = statements.many("get", len(stored))
            args = prepared.args({**padded(stored, width), "now": now})
            for key, full, value in await self._read(prepared.sql, args):
                found[full if full is not None else key_text(key)] = value_bytes(value)
        return [found.get(key) for key in keys]

    async def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        statements = self._statements or await self._prepare()
        row = entry_row(key, value, ttl, created, time.time(), self.schema.key_limit)
        await self._run(statements.upsert.sql, statements.upsert.args(row))
        await self._maybe_purge()

    async def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        if not items:
            return
        statements = self._statements or await self._prepare()
        now = time.time()
        limit = self.schema.key_limit
        rows = [entry_row(k, v, ttl, created, now, limit) for k, v in items.items()]
        rows.sort(key=lambda row: row["key"])
        upsert = statements.upsert
        await self._run_batch(upsert.sql, [upsert.args(row) for row in rows])
        await self._maybe_purge()

    async def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        statements = self._statements or await self._prepare()
        stored = sorted({storage_key(k, self.schema.key_limit)[0] for k in keys})
        for start in range(0, len(stored), MANY_CHUNK):
            chunk = stored[start : start + MANY_CHUNK]
            prepared, width = statements.many("delete", len(chunk))
            await self._run(prepared.sql, prepared.args(padded(chunk, width)))

    async def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        statements = self._statements or await self._prepare()
        prepared = statements.clear(pattern, older_than, time.time())
        return int(await self._run(prepared.sql, prepared.args({})))

    async def close(self) -> None:
        await self._drop_reader()
        if self._readers is not None:
            await self._readers.close()
        await self.engine.dispose()

    # -- purge ---------------------------------------------------------------------------

    async def purge(self) -> int:
        """Delete at most ``purge_batch`` expired entries (and expired locks); return how many."""
        statements = self._statements or await self._prepare()
        now = time.time()
        removed = int(await self._run(statements.purge.sql, statements.purge.args({"now": now})))
        await self._run(statements.purge_locks.sql, statements.purge_locks.args({"now": now}))
        return removed

    async def _maybe_purge(self) -> None:
        if self.config.purge_batch <= 0 or self._purging or time.monotonic() < self._next_purge:
            return
        self._purging = True
        try:
            interval = self.config.purge_interval
            self._next_purge = time.monotonic() + interval
            if await self.purge() >= self.config.purge_batch:
                self._next_purge = time.monotonic() + min(interval, 1.0)
        except Exception as exc:
            log.warning("llmcache could not purge expired entries in %r: %s", self, exc)
        finally:
            self._purging = False

    # -- locks ---------------------------------------------------------------------------

    async def try_lock(self, name: str, ttl: float) -> str | None:
        statements = self._statements or await self._prepare()
        stored = storage_key(name, self.schema.key_limit)[0]
        token = uuid.uuid4().hex
        now = time.time()
        take = statements.take_lock
        await self._run(
            take.sql, take.args({"name": stored, "token": token, "expires": now + ttl, "now": now})
        )
        rows = await self._run(
            statements.lock_token.sql, statements.lock_token.args({"name": stored}), fetch=True
        )
        return token if rows and rows[0][0] == token else None

    async def unlock(self, name: str, token: str) -> None:
        statements = self._statements or await self._prepare()
        stored = storage_key(name, self.schema.key_limit)[0]
        await self._run(
            statements.unlock.sql, statements.unlock.args({"name": stored, "token": token})
        )

    # -- semantic vectors (pgvector, see llmcache_sql.vectors) -----------------------------

    async def vectors(self, dim: int) -> bool:
        """Tell whether this tier keeps and searches vectors of ``dim`` dimensions itself
        (see :meth:`llmcache_sql.backend.SQLBackend.vectors`)."""
        if dim in self._vector_sql:
            return self._vector_sql[dim] is not None
        self._statements or await self._prepare()
        async with self.engine.connect() as conn:
            reason = await conn.run_sync(ensure_vectors, self.schema, dim)
        if dim not in self._vector_sql:  # another coroutine may have decided meanwhile
            if reason is None:
                self._vector_sql[dim] = VectorStatements(self.schema, dim, self.engine.dialect)
            else:
                self._vector_sql[dim] = None
                if self.config.family == "postgresql":
                    not_found(self, reason)
        return self._vector_sql[dim] is not None

    def _vector_statements(self, dim: int) -> VectorStatements:
        statements = self._vector_sql.get(dim)
        if statements is None:
            raise ValueError(f"{self!r} keeps no vectors of {dim} dimensions (see vectors())")
        return statements

    async def put_vectors(
        self, dim: int, items: Sequence[tuple[str, str, Sequence[float]]]
    ) -> None:
        """Store ``(record key, space, vector)`` items beside their records
        (see :meth:`llmcache_sql.backend.SQLBackend.put_vectors`)."""
        statements = self._vector_statements(dim)
        limit = self.schema.key_limit
        rows = sorted((storage_key(key, limit)[0], space, vector) for key, space, vector in items)
        await self._run_batch(statements.put.sql, [statements.put_args(*row) for row in rows])

    async def search_vectors(
        self, dim: int, space: str, vector: Sequence[float], k: int, floor: float
    ) -> list[tuple[str, float, bytes]]:
        """Return the nearest records of ``space``, best first
        (see :meth:`llmcache_sql.backend.SQLBackend.search_vectors`)."""
        statements = self._vector_statements(dim)
        args = statements.search_args(space, vector, k, floor)
        rows = await self._read(statements.search.sql, args)
        return [(key_text(key), 1.0 - float(far), value_bytes(value)) for key, far, value in rows]
