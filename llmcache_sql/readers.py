"""The PostgreSQL hit path of the asyncio tier: reads on psycopg's own ``AsyncConnection``.

Through SQLAlchemy's asyncio layer, a ``SELECT`` costs a pool checkout and return, a
greenlet switch into the sync execution layer and back, a result object and the pool's
reset: on loopback, about three times the driver's own ``execute`` and ``fetchall``. Reads
therefore keep a few pooled connections checked out, and run on their driver connections
directly: a hit is one ``execute`` (psycopg prepares the statement after a few runs) and
one ``fetchall``. Writes, clears and locks keep to the engine and its pool.

Each read is bounded as every statement of the tier is: an alarm of the watchdog cuts the
socket of a read still running at :data:`~llmcache_sql.engines.WATCH_SHARE` of the
timeout, and the driver then fails at once. Taking a connection from the pool (rare: only
when no idle reader is left) is bounded by the timeout. So the core awaits reads as they
are, with no timeout task around them. A read that fails or is cancelled drops its
connection, which never goes back to the pool with a half-read reply.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from . import watchdog

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["DIRECT_DRIVERS", "Readers"]

#: The asyncio drivers whose connections reads run on directly.
DIRECT_DRIVERS = frozenset({"psycopg"})

# one checked-out connection: SQLAlchemy's, the driver's, its socket (number, inode)
_Reader = tuple["AsyncConnection", Any, "tuple[int, int | None] | None"]


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

    async def read(self, sql: str, args: Any) -> list[Any]:
        """Run a ``SELECT`` on a reader; return its rows."""
        idle = self._idle
        if idle and self.loop is asyncio.get_running_loop():
            reader = idle.pop()
        else:
            reader = await self._open()
            idle = self._idle  # a new list if the event loop changed
        sa_conn, driver, found = reader
        alarm = None if found is None else watchdog.watchdog.arm(found[0], self.watch, found[1])
        try:
            cursor = await driver.execute(sql, args)
            rows: list[Any] = await cursor.fetchall()
        except BaseException:
            if alarm is not None:
                watchdog.watchdog.disarm(alarm)
            await self._drop(sa_conn)
            raise
        if alarm is not None and watchdog.watchdog.disarm(alarm):
            await self._drop(sa_conn)  # its socket was cut just as the rows came
        elif len(idle) < self.keep and not driver.closed:
            idle.append(reader)
        else:
            await sa_conn.close()
        return rows

    async def _open(self) -> _Reader:
        """Check a connection out of the engine's pool for reads (bounded by the timeout)."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # connections belong to the loop that opened them
            self.loop, self._idle = loop, []
        async with asyncio.timeout(self.timeout):
            sa_conn = await self.engine.connect()
            try:
                raw = await sa_conn.get_raw_connection()
            except BaseException:
                await sa_conn.close()
                raise
        return sa_conn, raw.driver_connection, watchdog.socket_of(raw)

    @staticmethod
    async def _drop(sa_conn: AsyncConnection) -> None:
        try:
            await sa_conn.invalidate()
        finally:
            await sa_conn.close()

    async def close(self) -> None:
        """Give every idle reader back to the pool."""
        idle, self._idle = self._idle, []
        for sa_conn, _, _ in idle:
            await sa_conn.close()
