"""The synchronous SQL tier.

A cache hit is one indexed primary-key ``SELECT``, compiled once by SQLAlchemy and run
straight on a DBAPI cursor:

* on SQLite, each thread keeps a connection of its own to the file (opened on its first
  call, closed by :meth:`SQLBackend.close` or when the thread has gone) and a cursor on it
  for its reads, so a hit pays for the ``SELECT`` alone, not even for a new cursor;
* on PostgreSQL and MySQL/MariaDB, each call borrows a connection from SQLAlchemy's pool.

Writes are upserts. Expired rows are never read (the ``SELECT`` filters on ``expires``)
and are deleted by a bounded purge (at most ``purge_batch`` rows, found through the
``expires`` index) that a write triggers at most once per ``purge_interval`` seconds.
On SQLite a clear, too, deletes in short batches, so that it never holds the file's one
write lock for long.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmcache.backends.base import BaseCacheBackend, StoredEntry

from . import watchdog
from .config import SQLConfig
from .engines import sqlite_setup, sync_engine
from .schema import (
    Schema,
    build_schema,
    ensure_schema,
    entry_row,
    key_text,
    storage_key,
    value_bytes,
)
from .statements import MANY_CHUNK, Statements, is_literal, padded
from .vectors import VectorStatements, ensure_vectors, not_found
from .watchdog import Alarm

__all__ = ["SQLBackend"]

log = logging.getLogger("llmcache.sql")

SCAN_PAGE = 500
CLEAR_BATCH = 500  # rows one write of a SQLite clear removes (see _clear_in_batches)
_LIVE: weakref.WeakSet[SQLBackend] = weakref.WeakSet()
_ABANDONED: list[Any] = []  # connections inherited through fork(): never touched again


class _ThreadConnections:
    """One DBAPI connection per thread (SQLite), all closed together.

    Each thread's ``local`` holds its connection (``conn``) and, once it has read, a cursor
    kept for the hot read (``reader``): reusing it spares creating a cursor per hit.
    """

    def __init__(self, connect: Any) -> None:
        self._connect = connect
        self.local = threading.local()
        self._all: dict[int, tuple[weakref.ref[threading.Thread], Any]] = {}
        self._lock = threading.Lock()

    def get(self) -> Any:
        conn = getattr(self.local, "conn", None)
        return conn if conn is not None else self._open()

    def reader(self) -> Any:
        """Return this thread's read cursor, opening its connection if needed."""
        reader = self.get().cursor()
        self.local.reader = reader
        return reader

    def _open(self) -> Any:
        conn = self._connect()
        with self._lock:
            dead = [
                ident
                for ident, (thread, _) in self._all.items()
                if (t := thread()) is None or not t.is_alive()
            ]
            stale = [self._all.pop(ident)[1] for ident in dead]
            self._all[id(conn)] = (weakref.ref(threading.current_thread()), conn)
        self.local.conn = conn
        for old in stale:
            _close_quietly(old)
        return conn

    def discard(self, conn: Any) -> None:
        """Forget and close a connection that failed."""
        local = self.local
        if getattr(local, "conn", None) is conn:
            local.conn = None
            local.__dict__.pop("reader", None)
        with self._lock:
            self._all.pop(id(conn), None)
        _close_quietly(conn)

    def close_all(self) -> None:
        with self._lock:
            conns = [conn for _, conn in self._all.values()]
            self._all.clear()
            self.local = threading.local()  # other threads open afresh on their next call
        for conn in conns:
            _close_quietly(conn)

    def forget(self) -> list[Any]:
        """Drop every connection without closing it (in a child process after fork)."""
        with self._lock:
            conns = [conn for _, conn in self._all.values()]
            self._all.clear()
            self.local = threading.local()
        return conns


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # a connection that failed may fail to close too; it is gone either way
        log.debug("llmcache could not close a SQL connection", exc_info=True)


class SQLBackend(BaseCacheBackend):
    """A cache tier in a SQL table: SQLite file, PostgreSQL, MySQL or MariaDB.

    Build it with :func:`llmcache_sql.plugin.from_url`; nothing connects before the first
    call, which creates the tables if they are missing.

    :param config: the parsed tier URL.
    """

    shared = True
    supports_scan = True
    supports_locks = True

    def __init__(self, config: SQLConfig) -> None:
        self.config = config
        self.schema: Schema = build_schema(config.table, config.family)
        self.engine = sync_engine(config)
        self._statements: Statements | None = None
        self._sqlite_get = ""  # the one-key SELECT, set by _prepare on SQLite
        self._prepare_lock = threading.Lock()
        self._threads = (
            _ThreadConnections(self._connect_sqlite) if config.family == "sqlite" else None
        )
        self._purge_lock = threading.Lock()
        self._next_purge = 0.0
        self._watched = config.family == "postgresql"  # the other drivers time out by themselves
        self._vector_sql: dict[int, VectorStatements | None] = {}  # dim -> pgvector's, or None
        # psycopg 3 reads rows in PostgreSQL's binary format: a value comes as its bytes,
        # where the text format has the server write a bytea as hex and psycopg decode it
        driver = config.driver.name if config.driver is not None else None
        self._binary = self._watched and driver == "psycopg"
        # psycopg 3: reads keep a few pooled connections checked out, each with its cursor,
        # taken and given back without the pool's checkout, events and locks (see _read)
        self._readers: list[tuple[Any, Any]] | None = [] if self._binary else None
        self._keep = max(1, config.pool_size // 2)  # the rest of the pool stays for writes
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<SQLBackend {self.config.redacted} table={self.schema.name}>"

    # -- connections ---------------------------------------------------------------------

    def _connect_sqlite(self) -> Any:
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        cparams.update(self.config.connect_args)
        cparams.update(check_same_thread=False, isolation_level=None)
        conn = dialect.loaded_dbapi.connect(*cargs, **cparams)
        try:
            sqlite_setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _sqlite_reader(self) -> Any:
        """Return this thread's read cursor (SQLite), creating the tables on first use."""
        assert self._threads is not None
        if self._statements is None:
            self._prepare()
        return self._threads.reader()

    def _acquire(self) -> Any:
        if self._threads is not None:
            return self._threads.get()
        return self.engine.raw_connection()

    def _release(self, conn: Any) -> None:
        if self._threads is None:
            conn.close()  # back to the pool

    def _broken(self, conn: Any, exc: Exception) -> None:
        if self._threads is not None:
            self._threads.discard(conn)
            return
        disconnect = False
        try:
            error: Any = exc  # a driver error (typed differently across SQLAlchemy 2.x)
            disconnect = self.engine.dialect.is_disconnect(error, conn.dbapi_connection, None)
        except Exception:
            log.debug("llmcache could not classify a SQL error", exc_info=True)
        conn.invalidate(exc)
        if disconnect:  # the server went away: its other pooled connections are dead too
            self.engine.dispose()

    def _arm(self, conn: Any) -> Alarm | None:
        """Bound a PostgreSQL call by the timeout on the client side (see watchdog)."""
        if not self._watched:
            return None
        found = watchdog.socket_of(conn)
        if found is None:
            return None
        fd, inode = found
        return watchdog.watchdog.arm(fd, self.config.timeout, inode)

    def _run(self, sql: str, args: Any, *, fetch: bool = False, many: bool = False) -> Any:
        """Run one statement on a connection of its own; return its rows or row count."""
        conn = self._acquire()
        alarm = self._arm(conn)
        try:
            cursor = conn.cursor()
            try:
                if many:
                    cursor.executemany(sql, args)
                elif fetch and self._binary:
                    cursor.execute(sql, args, binary=True)
                else:
                    cursor.execute(sql, args)
                result = cursor.fetchall() if fetch else cursor.rowcount
            finally:
                cursor.close()
        except Exception as exc:
            if alarm is not None:
                watchdog.watchdog.disarm(alarm)
            self._broken(conn, exc)
            raise
        else:
            if alarm is not None and watchdog.watchdog.disarm(alarm):
                conn.invalidate()  # the answer came, but its socket was cut just after
            return result
        finally:
            self._release(conn)

    def _read(self, sql: str, args: Any) -> list[Any]:
        """Run a ``SELECT``; with psycopg 3, on a connection kept for reads.

        A read pops an idle reader (``list.pop`` and ``append`` need no lock of ours), or
        takes a new connection from the pool; afterwards the connection is kept for the
        next read, up to ``pool_size // 2`` of them, or goes back to the pool. A read that
        fails drops its connection and the idle readers (a lost server leaves them dead).
        """
        readers = self._readers
        if readers is None:
            return list(self._run(sql, args, fetch=True))
        try:
            conn, cursor = readers.pop()
        except IndexError:
            conn = self.engine.raw_connection()
            cursor = conn.cursor()
        alarm = self._arm(conn)
        try:
            cursor.execute(sql, args, binary=True)
            rows: list[Any] = cursor.fetchall()
        except BaseException as exc:
            if alarm is not None:
                watchdog.watchdog.disarm(alarm)
            if isinstance(exc, Exception):
                self._broken(conn, exc)
            else:
                conn.invalidate()
            conn.close()
            self._drop_readers(invalidate=True)
            raise
        if alarm is not None and watchdog.watchdog.disarm(alarm):
            conn.invalidate()  # the answer came, but its socket was cut just after
            conn.close()
        elif len(readers) < self._keep:
            readers.append((conn, cursor))
        else:
            cursor.close()
            conn.close()
        return rows

    def _drop_readers(self, *, invalidate: bool = False) -> None:
        """Give every idle reader back to the pool (``invalidate``: closed, not reused)."""
        readers = self._readers
        while readers:
            try:
                conn, cursor = readers.pop()
            except IndexError:  # another thread took the last one
                break
            _close_quietly(cursor)
            if invalidate:
                try:
                    conn.invalidate()
                except Exception:
                    log.debug("llmcache could not close a SQL connection", exc_info=True)
            _close_quietly(conn)

    def _run_batch(self, sql: str, rows: Sequence[Any]) -> None:
        """Run ``sql`` for each of ``rows``; on SQLite in one transaction."""
        if self._threads is None:
            self._run(sql, rows, many=True)
            return
        conn = self._threads.get()
        try:
            # IMMEDIATE: take the write lock now (waiting up to the busy timeout), rather
            # than fail when a read lock cannot be upgraded mid-transaction
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        except Exception:
            self._threads.discard(conn)
            raise

    # -- setup ---------------------------------------------------------------------------

    def _prepare(self) -> Statements:
        """Create the tables if needed and compile the statements (first call only)."""
        with self._prepare_lock:
            if self._statements is not None:
                return self._statements
            if self.config.family == "sqlite":
                self._make_directory()
            with self.engine.connect() as conn:
                ensure_schema(conn, self.schema, self.config.timeout)
            statements = Statements(self.schema, self.engine.dialect, self.config.purge_batch)
            if self._threads is not None:
                # get() binds (key, now) itself, in the order SQLite's ``?`` markers take
                assert statements.get_args("k", 0.0) == ("k", 0.0)
                self._sqlite_get = statements.get.sql
            self._statements = statements
            return statements

    def _make_directory(self) -> None:
        database = self.engine.url.database
        if database and not database.startswith("file:") and not self.engine.url.query.get("uri"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)

    # -- the contract --------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        threads = self._threads
        if threads is not None:  # SQLite: keys are stored whole
            try:
                reader = threads.local.reader
            except AttributeError:  # this thread's first read since it started or close()
                reader = self._sqlite_reader()
            try:
                row = reader.execute(self._sqlite_get, (key, time.time())).fetchone()
            except Exception:
                threads.discard(reader.connection)
                raise
            if row is None:
                return None
            value = row[0]
            return value if type(value) is bytes else value_bytes(value)
        statements = self._statements or self._prepare()
        stored, full = storage_key(key, self.schema.key_limit)
        if full is None:
            rows = self._read(statements.get.sql, statements.get_args(stored, time.time()))
        else:
            args = statements.get_long_args(stored, full, time.time())
            rows = self._read(statements.get_long.sql, args)
        return value_bytes(rows[0][0]) if rows else None

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        statements = self._statements or self._prepare()
        now = time.time()
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), MANY_CHUNK):
            stored = [
                storage_key(k, self.schema.key_limit)[0] for k in unique[start : start + MANY_CHUNK]
            ]
            prepared, width = statements.many("get", len(stored))
            args = prepared.args({**padded(stored, width), "now": now})
            for key, full, value in self._read(prepared.sql, args):
                # a hashed row answers only for its full key
                found[full if full is not None else key_text(key)] = value_bytes(value)
        return [found.get(key) for key in keys]

    def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        statements = self._statements or self._prepare()
        now = time.time()
        row = entry_row(key, value, ttl, created, now, self.schema.key_limit)
        self._run(statements.upsert.sql, statements.upsert.args(row))
        self._maybe_purge()

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        if not items:
            return
        statements = self._statements or self._prepare()
        now = time.time()
        limit = self.schema.key_limit
        rows = [entry_row(k, v, ttl, created, now, limit) for k, v in items.items()]
        rows.sort(key=lambda row: row["key"])  # one lock order for every writer: no deadlocks
        upsert = statements.upsert
        self._run_batch(upsert.sql, [upsert.args(row) for row in rows])
        self._maybe_purge()

    def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        statements = self._statements or self._prepare()
        stored = sorted({storage_key(k, self.schema.key_limit)[0] for k in keys})
        for start in range(0, len(stored), MANY_CHUNK):
            chunk = stored[start : start + MANY_CHUNK]
            prepared, width = statements.many("delete", len(chunk))
            self._run(prepared.sql, prepared.args(padded(chunk, width)))

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        statements = self._statements or self._prepare()
        now = time.time()
        if self._threads is not None and (pattern is None or not is_literal(pattern)):
            return self._clear_in_batches(statements, pattern, older_than, now)
        prepared = statements.clear(pattern, older_than, now)
        return int(self._run(prepared.sql, prepared.args({})))

    def _clear_in_batches(
        self, statements: Statements, pattern: str | None, older_than: float | None, now: float
    ) -> int:
        """Clear on SQLite a batch at a time, so that no write holds the file's lock for long.

        Other processes' writes wait for one batch at most, never for the whole clear;
        each batch is bounded by the busy timeout on its own.
        """
        plan = statements.clear_batches(pattern, older_than, now, CLEAR_BATCH)
        page = plan.first
        after: dict[str, Any] = {}
        removed = 0
        while True:
            rows = self._run(page.sql, page.args(after), fetch=True)
            if not rows:
                return removed
            ids = [row[-1] for row in rows]
            removed += int(self._run(plan.delete.sql, plan.delete.args(padded(ids, plan.batch))))
            if len(rows) < plan.batch:
                return removed
            page = plan.next
            after = dict(zip(plan.after, rows[-1], strict=True))

    def close(self) -> None:
        if self._threads is not None:
            self._threads.close_all()
        self._drop_readers()
        self.engine.dispose()

    # -- purge ---------------------------------------------------------------------------

    def purge(self) -> int:
        """Delete at most ``purge_batch`` expired entries (and expired locks); return how many.

        Each statement finds its rows through the ``expires`` index, so a purge costs the
        rows it removes, never a scan of the table.
        """
        statements = self._statements or self._prepare()
        now = time.time()
        removed = int(self._run(statements.purge.sql, statements.purge.args({"now": now})))
        self._run(statements.purge_locks.sql, statements.purge_locks.args({"now": now}))
        return removed

    def _maybe_purge(self) -> None:
        """Purge after a write when the interval has passed (one thread at a time)."""
        if self.config.purge_batch <= 0 or time.monotonic() < self._next_purge:
            return
        if not self._purge_lock.acquire(blocking=False):
            return
        try:
            interval = self.config.purge_interval
            self._next_purge = time.monotonic() + interval
            removed = self.purge()
            if removed >= self.config.purge_batch:  # more are waiting: come back sooner
                self._next_purge = time.monotonic() + min(interval, 1.0)
        except Exception as exc:
            # the write itself succeeded; a purge that failed is retried next interval
            log.warning("llmcache could not purge expired entries in %r: %s", self, exc)
        finally:
            self._purge_lock.release()

    # -- scan (llmcache stats) -----------------------------------------------------------

    def scan(self, pattern: str | None = None) -> Iterator[StoredEntry]:
        statements = self._statements or self._prepare()
        after: Any = None
        while True:
            prepared = statements.scan(pattern, time.time(), after, SCAN_PAGE)
            rows = self._run(prepared.sql, prepared.args({}), fetch=True)
            for key, full, size, created, expires in rows:
                yield StoredEntry(
                    full if full is not None else key_text(key), size, created, expires
                )
            if len(rows) < SCAN_PAGE:
                return
            after = rows[-1][0]

    # -- locks (cross-process single-flight) ---------------------------------------------

    def try_lock(self, name: str, ttl: float) -> str | None:
        statements = self._statements or self._prepare()
        stored = storage_key(name, self.schema.key_limit)[0]
        token = uuid.uuid4().hex
        now = time.time()
        take = statements.take_lock
        self._run(
            take.sql, take.args({"name": stored, "token": token, "expires": now + ttl, "now": now})
        )
        rows = self._run(
            statements.lock_token.sql, statements.lock_token.args({"name": stored}), fetch=True
        )
        return token if rows and rows[0][0] == token else None

    def unlock(self, name: str, token: str) -> None:
        statements = self._statements or self._prepare()
        stored = storage_key(name, self.schema.key_limit)[0]
        self._run(statements.unlock.sql, statements.unlock.args({"name": stored, "token": token}))

    # -- semantic vectors (pgvector, see llmcache_sql.vectors) -----------------------------

    def vectors(self, dim: int) -> bool:
        """Tell whether this tier keeps and searches vectors of ``dim`` dimensions itself.

        True on PostgreSQL with the ``vector`` extension (created here where it is available
        and permitted, with the vector table, on the first call); otherwise False, said
        once in the log for a PostgreSQL tier. Decided once per size.
        """
        if dim in self._vector_sql:
            return self._vector_sql[dim] is not None
        self._statements or self._prepare()
        with self._prepare_lock:
            if dim not in self._vector_sql:
                with self.engine.connect() as conn:
                    reason = ensure_vectors(conn, self.schema, dim)
                if reason is None:
                    made = VectorStatements(self.schema, dim, self.engine.dialect)
                    self._vector_sql[dim] = made
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

    def put_vectors(self, dim: int, items: Sequence[tuple[str, str, Sequence[float]]]) -> None:
        """Store ``(record key, space, vector)`` items beside their records.

        A vector whose record is not in the table is not stored; it takes the record's
        expiry, and goes when the record goes.

        :raises ValueError: :meth:`vectors` did not say yes to ``dim``.
        """
        statements = self._vector_statements(dim)
        limit = self.schema.key_limit
        rows = sorted(
            (storage_key(key, limit)[0], space, vector) for key, space, vector in items
        )  # one lock order for every writer
        self._run_batch(statements.put.sql, [statements.put_args(*row) for row in rows])

    def search_vectors(
        self, dim: int, space: str, vector: Sequence[float], k: int, floor: float
    ) -> list[tuple[str, float, bytes]]:
        """Return the nearest records of ``space``, best first, in one statement.

        Up to ``k`` ``(record key, cosine similarity, record)`` triples: the ``k`` nearest
        live vectors of ``space`` whose similarity is at least ``floor``, with the stored
        bytes of their records.

        :raises ValueError: :meth:`vectors` did not say yes to ``dim``.
        """
        statements = self._vector_statements(dim)
        args = statements.search_args(space, vector, k, floor)
        rows = self._run(statements.search.sql, args, fetch=True)
        return [(key_text(key), 1.0 - float(far), value_bytes(value)) for key, far, value in rows]

    # -- fork ----------------------------------------------------------------------------

    def _forget_connections(self) -> None:
        """In a child process: drop the parent's connections without using them."""
        if self._threads is not None:
            _ABANDONED.extend(self._threads.forget())
        if self._readers:
            _ABANDONED.extend(self._readers)
            self._readers = []
        self.engine.dispose(close=False)


def _after_fork_in_child() -> None:
    for backend in list(_LIVE):
        backend._forget_connections()


os.register_at_fork(after_in_child=_after_fork_in_child)
