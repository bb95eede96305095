"""A client-side deadline for drivers that have none: cut the socket of a call that is late.

psycopg (and psycopg2) wait for the server's answer for as long as it takes: the server's
``statement_timeout`` cannot help when the network, or a proxy, swallows the answer. So
each PostgreSQL call arms an :class:`Alarm` on its connection's socket; one daemon thread
per process shuts down the sockets of alarms that reach their deadline, the driver then
fails at once ("server closed the connection"), and the tier drops the connection. A call
that ends in time disarms its alarm: two lock operations and a heap push, a few
microseconds beside a network round trip.

Connecting has the same problem (psycopg waits at least 2 s): :func:`bounded_connect`
connects in a helper thread and gives up after the tier's timeout.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "Alarm",
    "Watchdog",
    "bounded_connect",
    "cut",
    "fileno_of",
    "socket_of",
    "watch_statements",
    "watchdog",
]

_ALARM = "llmcache_alarm"  # where a statement's alarm waits in Connection.info
_SOCKET = "llmcache_socket"  # a pooled connection's (fd, inode), in its record's info


class Alarm:
    """One armed deadline on one socket.

    The socket's inode is kept too: should the driver close the socket and the number be
    reused before the alarm is disarmed, the alarm leaves the newcomer alone.
    """

    __slots__ = ("armed", "deadline", "fd", "fired", "inode")

    def __init__(self, fd: int, deadline: float, inode: int | None) -> None:
        self.fd = fd
        self.inode = inode
        self.deadline = deadline
        self.armed = True
        self.fired = False


def _inode(fd: int) -> int | None:
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return None


def _shut_down(alarm: Alarm) -> None:
    cut(alarm.fd, alarm.inode)


def cut(fd: int, inode: int | None) -> None:
    """Shut socket ``fd`` down for both directions (the driver keeps its fd), unless it is
    no longer the socket whose inode was ``inode``."""
    if inode is None or _inode(fd) != inode:
        return  # closed, and maybe the number reused: not ours to cut
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing to cut
    finally:
        sock.close()


class Watchdog:
    """Shut down the sockets of calls that outlive their deadline."""

    def __init__(self) -> None:
        # arm and disarm take the bare lock (cheaper than entering the Condition)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, fd: int, seconds: float, inode: int | None = None) -> Alarm:
        """Cut ``fd``'s socket in ``seconds`` unless :meth:`disarm` comes first.

        :param inode: the socket's inode, as :func:`socket_of` found it when the connection
            was new; looked up now when not given.
        """
        alarm = Alarm(fd, time.monotonic() + seconds, _inode(fd) if inode is None else inode)
        with self._lock:
            heapq.heappush(self._heap, (alarm.deadline, next(self._order), alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="llmcache-sql-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is alarm:  # the earliest deadline now: wake the thread
                self._cond.notify()
        return alarm

    def disarm(self, alarm: Alarm) -> bool:
        """Cancel ``alarm``; return whether it fired (the socket is then unusable)."""
        with self._lock:
            alarm.armed = False
            return alarm.fired

    def _run(self) -> None:
        with self._cond:
            while True:
                heap = self._heap
                while heap and not heap[0][2].armed:
                    heapq.heappop(heap)
                if not heap:
                    self._cond.wait()
                    continue
                wait = heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                alarm = heapq.heappop(heap)[2]
                alarm.armed = False
                alarm.fired = True
                # under the lock: a call that disarmed first never loses its socket
                _shut_down(alarm)


watchdog = Watchdog()


def _after_fork_in_child() -> None:
    global watchdog
    watchdog = Watchdog()  # the parent's thread and lock did not come along


os.register_at_fork(after_in_child=_after_fork_in_child)


def bounded_connect(connect: Callable[[], Any], timeout: float, error: type[Exception]) -> Any:
    """Return ``connect()``, or raise ``error`` when it takes longer than ``timeout``.

    The attempt goes on in its helper thread (bounded by the driver's own connect
    timeout); a connection that arrives too late is closed.
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()

    def attempt() -> None:
        try:
            conn = connect()
        except BaseException as exc:
            box["error"] = exc
        else:
            with lock:
                if box.get("abandoned"):
                    conn.close()
                    return
                box["conn"] = conn
        done.set()

    threading.Thread(target=attempt, name="llmcache-sql-connect", daemon=True).start()
    if not done.wait(timeout):
        with lock:
            if "conn" not in box and "error" not in box:
                box["abandoned"] = True
                raise error(f"connection timeout expired (no connection within {timeout:g} s)")
    if "error" in box:
        raise box["error"]
    return box["conn"]


def fileno_of(connection: Any) -> int | None:
    """Return the socket of a pooled connection's driver connection, if it has one."""
    fileno = getattr(getattr(connection, "driver_connection", None), "fileno", None)
    return None if fileno is None else int(fileno())


def socket_of(connection: Any) -> tuple[int, int | None] | None:
    """Return the socket number and inode of a pooled connection, if it has a socket.

    Both are looked up once per driver connection and kept in the pool's ``info`` for it
    (which the pool empties when it replaces the driver connection): an ``fstat`` per
    call would cost more than the rest of arming an alarm. The inode found while the
    connection was new is the right one to check against should the number be reused.
    """
    info = connection.info
    if _SOCKET not in info:
        fd = fileno_of(connection)
        info[_SOCKET] = None if fd is None else (fd, _inode(fd))
    found: tuple[int, int | None] | None = info[_SOCKET]
    return found


def watch_statements(engine: Any, seconds: float) -> None:
    """Arm a deadline around every statement SQLAlchemy itself runs on ``engine``.

    The tiers run their hot statements on the driver's cursor and arm those themselves;
    this covers what goes through SQLAlchemy: creating the tables on first use.
    """
    from sqlalchemy import event

    def before(conn: Any, *_: Any) -> None:
        found = socket_of(conn.connection)
        if found is not None:
            conn.info[_ALARM] = watchdog.arm(found[0], seconds, found[1])

    def after(conn: Any, *_: Any) -> None:
        alarm = conn.info.pop(_ALARM, None)
        if alarm is not None:
            watchdog.disarm(alarm)

    def failed(context: Any) -> None:
        if context.connection is not None:
            after(context.connection)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)
