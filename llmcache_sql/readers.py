"""The PostgreSQL hit path of the asyncio tier: reads on psycopg's own ``AsyncConnection``.

Through SQLAlchemy's asyncio layer, a ``SELECT`` costs a pool checkout and return, a
greenlet switch into the sync execution layer and back, a result object and the pool's
reset: on loopback, about three times the driver's own ``execute`` and ``fetchall``. Reads
therefore keep a few pooled connections checked out, and run on their driver connections
directly: a hit is one ``execute`` on the connection's own cursor (psycopg prepares the
statement after a few runs) and one ``fetchall``. Results come in PostgreSQL's binary
format: a value arrives as its bytes, where the text format sends a ``bytea`` as hex for
the server to encode and psycopg to decode. Writes, clears and locks keep to the engine
and its pool.

Each read is bounded as every PostgreSQL call of the tier is: a read still running at
:data:`~llmcache_sql.engines.WATCH_SHARE` of the timeout has its socket cut, and psycopg
then fails at once (cancelling it instead would make psycopg ask the server to cancel,
over the network that is failing). The deadlines are watched by one timer of the event
loop, set again only when it fires, rather than by an alarm of the watchdog thread per
read: psycopg waits for the server through the loop, so the loop is free to cut the
socket, and a read then costs a store of its deadline instead of two lock operations and
a heap push. Taking a connection from the pool (rare: only when no idle reader is left) is
bounded by the timeout. So the core awaits reads as they are, with no timeout task around
them. A read that fails, is cancelled or was cut drops its connection, which never goes
back to the pool with a half-read reply.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING, Any

from . import watchdog

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["DIRECT_DRIVERS", "Readers"]

#: The asyncio drivers whose connections reads run on directly.
DIRECT_DRIVERS = frozenset({"psycopg"})


class _Reader:
    """One connection checked out for reads: SQLAlchemy's, the driver's, its socket."""

    __slots__ = ("cursor", "cut", "deadline", "driver", "inode", "sa_conn", "sock")

    def __init__(self, sa_conn: AsyncConnection, driver: Any, found: Any) -> None:
        self.sa_conn = sa_conn
        self.driver = driver
        self.cursor = driver.cursor()  # one for every read: psycopg's cursors are reusable
        self.sock: int | None = None if found is None else found[0]
        self.inode: int | None = None if found is None else found[1]
        self.deadline = 0.0  # monotonic() by which the read in progress must be done
        self.cut = False


class Readers:
    """Idle reader connections of one event loop, taken and given back without a lock.

    :param engine: the tier's asyncio engine, where readers come from.
    :param timeout: the tier's timeout, in seconds.
    :param share: the part of it a read may last before its socket is cut.
    :param keep: the most idle readers kept checked out; a connection beyond them goes back
        to the pool after its read, where writes find it.
    """

    def __init__(self, engine: AsyncEngine, timeout: float, share: float, keep: int) -> None:
        self.engine = engine
        self.timeout = timeout
        self.watch = timeout * share
        self.keep = keep
        self.loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Reader] = []
        self._busy: set[_Reader] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def read(self, sql: str, args: Any) -> list[Any]:
        """Run a ``SELECT`` on a reader; return its rows."""
        idle = self._idle
        if idle and self.loop is asyncio.get_running_loop():
            reader = idle.pop()
        else:
            reader = await self._open()
            idle = self._idle  # a new list if the event loop changed
        reader.deadline = monotonic() + self.watch
        self._busy.add(reader)
        if self._timer is None:
            self._timer = self.loop.call_later(self.watch, self._check)  # type: ignore[union-attr]
        try:
            cursor = reader.cursor
            await cursor.execute(sql, args, binary=True)
            rows: list[Any] = await cursor.fetchall()
        except BaseException:
            self._busy.discard(reader)
            broken = reader.driver.broken  # the server went away: the idle readers too
            await self._drop(reader)
            if broken:
                await self._drop_idle()
            raise
        self._busy.discard(reader)
        if reader.cut:
            await self._drop(reader)  # its socket was cut just as the rows came
        elif len(idle) < self.keep and not reader.driver.closed:
            idle.append(reader)
        else:
            await reader.sa_conn.close()
        return rows

    def _check(self) -> None:
        """Cut the sockets of reads past their deadline; watch on while reads run."""
        self._timer = None
        if not self._busy:
            return  # no read in progress: the next one sets the timer again
        now = monotonic()
        due = None
        for reader in list(self._busy):
            if reader.deadline <= now:
                self._busy.discard(reader)
                reader.cut = True
                if reader.sock is not None:
                    watchdog.cut(reader.sock, reader.inode)
            elif due is None or reader.deadline < due:
                due = reader.deadline
        if due is not None and self.loop is not None:
            self._timer = self.loop.call_later(due - now, self._check)

    async def _open(self) -> _Reader:
        """Check a connection out of the engine's pool for reads (bounded by the timeout)."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # connections belong to the loop that opened them
            self.loop, self._idle, self._busy = loop, [], set()
            self._timer = None
        async with asyncio.timeout(self.timeout):
            sa_conn = await self.engine.connect()
            try:
                raw = await sa_conn.get_raw_connection()
            except BaseException:
                await sa_conn.close()
                raise
        return _Reader(sa_conn, raw.driver_connection, watchdog.socket_of(raw))

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for reader in idle:
            await self._drop(reader)

    @staticmethod
    async def _drop(reader: _Reader) -> None:
        try:
            await reader.sa_conn.invalidate()
        finally:
            await reader.sa_conn.close()

    async def close(self) -> None:
        """Give every idle reader back to the pool."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        idle, self._idle = self._idle, []
        for reader in idle:
            await reader.sa_conn.close()
