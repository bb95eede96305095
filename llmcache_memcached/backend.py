"""The memcached tier: one server or a consistent-hash pool, with a clear() that works.

A read of keys on one server is one multi-get that also fetches the invalidation records
that govern them on that server (see :mod:`llmcache_memcached.invalidation`): one record
for a single key. So a clear made by any process is seen by the very next read, in the
same round trip. Writes tag each value with its record's ``(gen, seq)`` as last seen on
its server.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from llmcache.backends.base import BaseCacheBackend, reject_unknown_options
from llmcache.errors import MissingExtraError

from .config import parse_url
from .connection import get_command
from .invalidation import DEFAULT_MAX_RULES, ScopeState, fresh_state, parse_record
from .keys import (
    entry_key,
    lock_key,
    namespace_of,
    namespace_pattern,
    pattern_scope,
    scope_key,
    scope_keys,
    whole_scope,
)
from .pool import Server, ServerPool
from .values import (
    DEFAULT_MAX_ITEM_SIZE,
    HEADER,
    ITEM_OVERHEAD,
    MAGIC,
    ZLIB,
    expire_time,
    pack,
    payload,
)

__all__ = ["InvalidationContention", "MemcachedBackend", "Undecided", "fast_hit", "from_url"]

log = logging.getLogger("llmcache.memcached")

CAS_ATTEMPTS = 32
VIEW_TTL = 1.0  # seconds a writer trusts the records it last read
ROUTES = 4096  # keys whose routing a backend remembers (hot keys are read again and again)
_HEADER_SIZE = HEADER.size


class InvalidationContention(RuntimeError):
    """An invalidation record kept changing under a compare-and-set, attempt after attempt."""


class _View:
    """A record as this process last saw it on one server: its bytes, parsed, and when.

    ``tail`` is how the record ends a ``get`` reply while it is unchanged, so that the hit
    path recognises it with one comparison instead of parsing it.
    """

    __slots__ = ("raw", "seen", "state", "tail")

    def __init__(self, rkey: bytes, raw: bytes, state: ScopeState, seen: float) -> None:
        self.raw = raw
        self.state = state
        self.seen = seen
        self.tail = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (rkey, len(raw), raw)


_Views = dict[str, _View]  # one server's records, by record key
# Where a key lives, worked out once per key: its memcached key (str, bytes), its record's
# key (str, bytes), its server, that server's views, the hit path's command line, and how
# the entry's block of the reply starts.
_Route = tuple[str, bytes, str, bytes, Server, _Views, bytes, bytes]


class Undecided(Exception):
    """The hit path's shortcut cannot read this reply: parse it in full."""


def fast_hit(
    key: str, route: _Route, reply: bytes | dict[bytes, bytes], now: float
) -> bytes | None:
    """Read a one-key reply whose record is unchanged since the last read (the usual case).

    :raises Undecided: anything else (a changed record, an unusual reply).
    """
    view = route[5].get(route[2])
    if view is None or type(reply) is not bytes or not reply.endswith(view.tail):
        raise Undecided
    view.seen = now
    cut = len(reply) - len(view.tail)
    if not cut:
        return None  # only the record came back: no entry
    head = route[7]
    if not reply.startswith(head):
        raise Undecided
    eol = reply.find(b"\r\n", len(head))
    try:
        size = int(reply[len(head) : eol])
    except ValueError:
        raise Undecided from None
    if eol + size + 4 != cut:
        raise Undecided  # the reply is not what it looks like
    if size < _HEADER_SIZE:
        return None
    start = eol + 2
    magic, flags, created, expires, gen, seq = HEADER.unpack_from(reply, start)
    state = view.state
    if magic != MAGIC or gen != state.gen or (expires and expires <= now):
        return None
    if seq < state.top and state.invalidates(key, seq, created):
        return None
    body = reply[start + _HEADER_SIZE : cut - 2]
    return zlib.decompress(body) if flags & ZLIB else body


def _seen(views: _Views, rkey: str, raw: bytes | None, now: float) -> ScopeState | None:
    """Return the record fetched as ``raw`` (parsed only when its bytes changed)."""
    view = views.get(rkey)
    if view is not None and view.raw == raw:
        view.seen = now
        return view.state
    state = None if raw is None else parse_record(raw)
    if state is None:
        views.pop(rkey, None)
    else:
        views[rkey] = _View(rkey.encode("ascii"), raw, state, now)  # type: ignore[arg-type]
    return state


class MemcachedBackend(BaseCacheBackend):
    """A memcached store for llmcache entries.

    :param servers: ``(host, port)`` tuples or Unix socket paths; several make a pool.
    :param timeout: seconds for connecting and for each socket operation.
    :param pool_size: idle connections kept per server (``None``: 16).
    :param dead_timeout: seconds a failed server of a pool is skipped (its keys move to the
        next live server of the ring meanwhile).
    :param max_item_size: memcached's item size limit (its ``-I``), in bytes.
    :param max_rules: invalidation rules kept per record before a new generation replaces
        them.
    :param max_ttl: cap on the TTL of every value (``None``: no cap).

    :ivar oversized: values not stored because even compressed they exceed the item size.
    """

    shared = True
    supports_locks = True

    def __init__(
        self,
        servers: Sequence[tuple[str, int] | str],
        *,
        timeout: float = 1.0,
        pool_size: int | None = None,
        dead_timeout: float = 5.0,
        max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
        max_rules: int = DEFAULT_MAX_RULES,
        max_ttl: float | None = None,
    ) -> None:
        self.pool = ServerPool(
            servers, timeout=timeout, pool_size=pool_size, dead_timeout=dead_timeout
        )
        self.max_item_size = max_item_size
        self.max_rules = max_rules
        self.max_ttl = max_ttl
        self.oversized = 0
        self._lock = threading.Lock()
        # each server's records as this process last saw them
        self._views: dict[str, _Views] = {server.name: {} for server in self.pool.servers}
        self.routes: dict[str, _Route] = {}
        self._remaps: dict[tuple[str, str], _Route] = {}  # keys of servers that are down

    def __repr__(self) -> str:
        return f"MemcachedBackend({[server.name for server in self.pool.servers]!r})"

    @property
    def server_failures(self) -> int:
        """Server failures this process has seen (each skips a server for a while)."""
        return self.pool.failures

    # -- keys ----------------------------------------------------------------------------

    def route_of(self, key: str) -> _Route:
        """Work out where ``key`` lives (remembered for the next :data:`ROUTES` keys)."""
        route = self.routes.get(key)
        if route is not None:
            return route
        route = self._route_on(key, self.pool.route(entry_key(key)))
        if len(self.routes) >= ROUTES:
            self.routes.clear()
        self.routes[key] = route
        return route

    def _route_on(self, key: str, server: Server) -> _Route:
        """Where ``key`` lives on ``server`` (its own, or the one standing in for it)."""
        mkey = entry_key(key)
        rkey = scope_key(namespace_of(key))
        command = get_command([mkey, rkey])
        mkey_bytes, rkey_bytes = mkey.encode("ascii"), rkey.encode("ascii")
        views = self._views[server.name]
        head = b"VALUE %s 0 " % mkey_bytes
        return (mkey, mkey_bytes, rkey, rkey_bytes, server, views, command, head)

    def placed(self, key: str) -> _Route | None:
        """The route of ``key`` now: on its own server, or while that one is down on the
        next live one of the ring; ``None`` when every server is down."""
        route = self.routes.get(key) or self.route_of(key)
        server = route[4]
        if not server.down_until or self._available(server):
            return route
        other = self.pool.fallback(route[0])
        if other is None:
            return None
        remapped = self._remaps.get((key, other.name))
        if remapped is None:
            if len(self._remaps) >= ROUTES:
                self._remaps.clear()
            remapped = self._remaps[(key, other.name)] = self._route_on(key, other)
        return remapped

    def _available(self, server: Server) -> bool:
        """Tell whether a server marked down may serve again.

        In a pool, the one caller whose turn it is to try it first makes everything it
        held before unreadable (a new generation in each of its records): clears made
        while it was away did not reach it, and its keys were written elsewhere meanwhile.
        """
        if not server.down_until:
            return True
        if not self.pool.usable(server):
            return False
        try:
            if len(self.pool.servers) > 1:
                # in a pool its keys lived elsewhere meanwhile; one server alone keeps its
                # entries (a clear it missed raised, as on any store that was down)
                self._forget_past(server)
        except self.pool.errors as exc:
            self.pool.failed(server, exc)
            return False
        self.pool.succeeded(server)
        return True

    def _forget_past(self, server: Server) -> None:
        now = time.time()

        def renew(state: ScopeState) -> ScopeState:
            return state.with_clear(None, None, now=now, max_rules=self.max_rules)

        self._update_existing(server, scope_keys(), renew)

    def by_server(self, keys: Iterable[str]) -> dict[Server, list[tuple[str, _Route]]]:
        """Group keys by the server that holds them now (keys with none are left out)."""
        groups: dict[Server, list[tuple[str, _Route]]] = {}
        for key in dict.fromkeys(keys):
            route = self.placed(key)
            if route is not None:
                groups.setdefault(route[4], []).append((key, route))
        return groups

    # -- reads ---------------------------------------------------------------------------

    @staticmethod
    def open_reply(key: str, route: _Route, found: dict[bytes, bytes], now: float) -> bytes | None:
        """Return the core's bytes of ``key`` from what its server returned, or ``None``
        when absent, expired or cleared (and note the record for writes)."""
        state = _seen(route[5], route[2], found.get(route[3]), now)
        value = found.get(route[1])
        if value is None or state is None or len(value) < _HEADER_SIZE:
            return None
        magic, flags, created, expires, gen, seq = HEADER.unpack_from(value)
        if magic != MAGIC or gen != state.gen or (expires and expires <= now):
            return None
        if seq < state.top and state.invalidates(key, seq, created):
            return None
        return payload(value, flags) if flags else value[_HEADER_SIZE:]

    @staticmethod
    def multi_get(items: Sequence[tuple[str, _Route]]) -> bytes:
        """The ``get`` line for one server's ``items``: their keys and their records."""
        if len(items) == 1:
            return items[0][1][6]
        records = dict.fromkeys(route[2] for _, route in items)
        return get_command([route[0] for _, route in items] + list(records))

    def get(self, key: str) -> bytes | None:
        # get_many's work for one key, written out: this is the hit path
        route = self.routes.get(key) or self.route_of(key)
        server = route[4]
        if server.down_until:
            placed = self.placed(key)
            if placed is None:
                raise self.pool.unavailable()
            route, server = placed, placed[4]
        client = server.acquire()
        try:
            reply = client.exchange(route[6])
            now = time.time()
            try:
                value = fast_hit(key, route, reply, now)
            except Undecided:
                found = client.complete(reply) if isinstance(reply, bytes) else reply
                value = self.open_reply(key, route, found, now)
        except self.pool.errors as exc:
            self.pool.failed(server, exc)
            raise
        finally:
            server.release(client)
        return value

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys``: one multi-get per server.

        A server that fails or is being skipped makes its keys misses; the call raises only
        when no server answered.
        """
        if not keys:
            return []
        values: dict[str, bytes | None] = {}
        error: BaseException | None = None
        answered = False
        for server, items in self.by_server(keys).items():
            try:
                found = server.call("fetch", self.multi_get(items))
            except self.pool.errors as exc:
                self.pool.failed(server, exc)
                error = error or exc
                continue
            answered = True
            now = time.time()
            for key, route in items:
                values[key] = self.open_reply(key, route, found, now)
        if not answered:
            if error is not None:
                raise error
            if self.pool.all_down():
                raise self.pool.unavailable()
        return [values.get(key) for key in keys]

    # -- writes --------------------------------------------------------------------------

    def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        self.set_many({key: value}, ttl, created=created)

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        """Store every item: one pipelined batch of sets per server."""
        if not items:
            return
        if self.max_ttl is not None and (ttl is None or ttl > self.max_ttl):
            ttl = self.max_ttl
        if ttl is not None and ttl <= 0:
            self.delete(list(items))
            return
        now = time.time()
        created = now if created is None else created
        expires = 0.0 if ttl is None else now + ttl
        exptime = expire_time(ttl, now)
        lifetime = math.inf if ttl is None else float(ttl)

        def batch(server: Server, group: list[tuple[str, _Route]]) -> None:
            states = self._writable(server, {route[2] for _, route in group}, lifetime)
            values = {}
            for key, (mkey, _, rkey, *_) in group:
                state = states[rkey]
                room = self.max_item_size - len(mkey) - ITEM_OVERHEAD
                tag = (state.gen, state.seq)
                value = pack(items[key], created=created, expires=expires, tag=tag, room=room)
                if value is None:
                    self._oversized(key, len(items[key]))
                else:
                    values[mkey] = value
            if values:
                self._store(server, values, exptime)

        self._each_server(list(items), batch)

    def _store(self, server: Server, values: dict[str, bytes], exptime: int) -> None:
        from pymemcache.exceptions import MemcacheServerError

        try:
            server.call("set_many", values, expire=exptime, noreply=False)
        except MemcacheServerError as exc:
            if "too large" not in str(exc):
                raise
            # the server's -I is below max_item_size: a skipped value, not a broken server
            self._oversized(", ".join(values), sum(map(len, values.values())))

    def _oversized(self, key: str, size: int) -> None:
        with self._lock:
            self.oversized += 1
        # the namespace only: the rest of a key is the user's scope and a digest
        log.warning(
            "llmcache value of %d bytes in namespace %r exceeds memcached's item size limit "
            "even compressed; not stored",
            size,
            namespace_of(key.split(", ", 1)[0]),
        )

    def delete(self, keys: Sequence[str]) -> None:
        def batch(server: Server, group: list[tuple[str, _Route]]) -> None:
            server.call("delete_many", [route[0] for _, route in group], noreply=False)

        self._each_server(keys, batch)

    def _each_server(
        self, keys: Sequence[str], action: Callable[[Server, list[tuple[str, _Route]]], None]
    ) -> None:
        """Run ``action`` per server that holds keys now; raise the first failure."""
        error: BaseException | None = None
        tried = False
        for server, group in self.by_server(keys).items():
            tried = True
            try:
                action(server, group)
            except self.pool.errors as exc:
                self.pool.failed(server, exc)
                error = error or exc
        if error is not None:
            raise error
        if not tried and keys and self.pool.all_down():
            raise self.pool.unavailable()

    # -- invalidation records ------------------------------------------------------------

    def _writable(
        self, server: Server, rkeys: Iterable[str], lifetime: float
    ) -> dict[str, ScopeState]:
        """Return ``server``'s records for tagging values that live ``lifetime`` seconds.

        A record is read (or created) when this process has not seen it for
        :data:`VIEW_TTL` seconds (reads refresh it for free), and its ``max_ttl`` raised
        first when the value may outlive what it allows, so that rule expiry never uncovers
        a live entry. A value tagged with an outdated view is dead on arrival: safe, and
        rare, since the core reads a key before writing it.
        """

        def allow(state: ScopeState) -> ScopeState:
            return state if state.max_ttl >= lifetime else state.with_max_ttl(lifetime)

        views = self._views[server.name]
        known: dict[str, ScopeState] = {}
        stale = []
        now = time.time()
        for rkey in sorted(rkeys):
            view = views.get(rkey)
            if view is None or view.state.max_ttl < lifetime or now - view.seen > VIEW_TTL:
                stale.append(rkey)
            else:
                known[rkey] = view.state
        if stale:
            found = server.call("fetch", get_command(stale))
            for rkey in stale:
                state = _seen(views, rkey, found.get(rkey.encode("ascii")), now)
                if state is None or state.max_ttl < lifetime:
                    state = self._update(server, rkey, allow)
                known[rkey] = state
        return known

    def _update(
        self, server: Server, rkey: str, change: Callable[[ScopeState], ScopeState]
    ) -> ScopeState:
        """Apply ``change`` to ``server``'s record ``rkey`` with compare-and-set, creating
        the record (a new generation) if it is missing or unreadable."""
        views = self._views[server.name]
        client = server.acquire()
        try:
            for attempt in range(CAS_ATTEMPTS):
                raw, cas = client.gets(rkey)
                current = None if raw is None else parse_record(raw)
                state = change(current or fresh_state())
                if current is not None and state is current:
                    stored, encoded = True, raw
                else:
                    encoded = state.encode()
                    if raw is None:
                        stored = client.add(rkey, encoded, expire=0, noreply=False)
                    else:  # replaces a valid record, or bytes that are no record at all
                        stored = client.cas(rkey, encoded, cas, expire=0, noreply=False)
                if stored:
                    views[rkey] = _View(rkey.encode("ascii"), encoded, state, time.time())
                    return state
                time.sleep(random.uniform(0, 0.001 * (attempt + 1)))  # jitter
        finally:
            server.release(client)
        raise InvalidationContention(
            f"memcached record {rkey!r} on {server.name} changed {CAS_ATTEMPTS} times in a row"
        )

    def _update_existing(
        self,
        server: Server,
        rkeys: Sequence[str],
        change: Callable[[ScopeState], ScopeState],
    ) -> None:
        """Apply ``change`` to those of ``rkeys`` that ``server`` holds: two round trips
        (``gets`` of them all, then pipelined compare-and-sets), repeated for conflicts.

        A missing or unreadable record is left alone: the entries it governed are misses
        already, and it comes back as a new generation.
        """
        views = self._views[server.name]
        client = server.acquire()
        try:
            pending = list(rkeys)
            for attempt in range(CAS_ATTEMPTS):
                found = client.gets_many(pending)
                batch = []
                for rkey in pending:
                    raw, cas = found.get(rkey, (None, None))
                    current = None if raw is None else parse_record(raw)
                    if current is None:
                        views.pop(rkey, None)
                    else:
                        state = change(current)
                        batch.append((rkey, state.encode(), cas, state))
                stored = client.cas_many([(rkey, raw, cas) for rkey, raw, cas, _ in batch])
                now = time.time()
                pending = []
                for (rkey, encoded, _, state), done in zip(batch, stored, strict=True):
                    if done:
                        views[rkey] = _View(rkey.encode("ascii"), encoded, state, now)
                    elif done is False:  # changed since the gets: do it again
                        pending.append(rkey)
                    else:  # gone meanwhile, and its entries with it
                        views.pop(rkey, None)
                if not pending:
                    return
                time.sleep(random.uniform(0, 0.001 * (attempt + 1)))  # jitter
        finally:
            server.release(client)
        raise InvalidationContention(
            f"memcached records {pending[:3]!r} on {server.name} changed {CAS_ATTEMPTS} "
            f"times in a row"
        )

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> None:
        """Invalidate matching entries on every server; O(1) in the number of entries.

        memcached cannot list keys, so this records a rule (or a new generation when
        everything is cleared) that every read checks: in the record of the pattern's
        namespace, or in every record when the pattern may cross namespaces. It cannot
        count what it removes, so it returns ``None``.

        :raises: the first server failure, after updating every server that answered: the
            entries of a server that could not be reached are not cleared.
        """
        now = time.time()
        cutoff = None if older_than is None else now - older_than
        namespace = pattern_scope(pattern)
        rkeys: Sequence[str]
        if namespace is None:
            rkeys = scope_keys()
            rule = None if whole_scope(pattern, None) else pattern
        else:
            rkeys = [scope_key(namespace)]
            rule = namespace_pattern(namespace) if whole_scope(pattern, namespace) else pattern

        def change(state: ScopeState) -> ScopeState:
            return state.with_clear(rule, cutoff, now=now, max_rules=self.max_rules)

        error: BaseException | None = None
        for server in self.pool.servers:  # every server, even one being skipped
            try:
                if server.down_until and len(self.pool.servers) > 1:
                    self._forget_past(server)  # back? its past goes, this clear with it
                    self.pool.succeeded(server)
                else:
                    self._update_existing(server, rkeys, change)
            except self.pool.errors as exc:
                self.pool.failed(server, exc)
                error = error or exc
        if error is not None:
            raise error
        return None

    # -- statistics ----------------------------------------------------------------------

    def server_stats(self) -> dict[str, dict[str, int | float | str]]:
        """Return each server's own counters (memcached's ``stats``), by server name.

        ``curr_items``, ``bytes``, ``get_hits``, ``get_misses``, ``evictions`` and the rest,
        for every namespace (memcached cannot tell them apart) and whatever else the
        server holds. A server that cannot be reached maps to an empty mapping.

        :raises: the first failure, when no server answered.
        """
        report: dict[str, dict[str, int | float | str]] = {}
        error: BaseException | None = None
        for server in self.pool.servers:
            try:
                raw = server.call("stats")
            except self.pool.errors as exc:
                self.pool.failed(server, exc)
                error = error or exc
                report[server.name] = {}
                continue
            report[server.name] = {
                _text(name): value if isinstance(value, int | float) else _text(value)
                for name, value in raw.items()
            }
        if error is not None and not any(report.values()):
            raise error
        return report

    # -- locks ---------------------------------------------------------------------------

    def _lock_server(self, key: str) -> Server:
        server = self.pool.route(key)
        if server.down_until and not self._available(server):
            server = self.pool.fallback(key)  # type: ignore[assignment]
            if server is None:
                raise self.pool.unavailable()
        return server

    def try_lock(self, name: str, ttl: float) -> str | None:
        key = lock_key(name)
        server = self._lock_server(key)
        token = secrets.token_hex(16)
        try:
            taken = server.call(
                "add", key, token.encode(), expire=max(1, math.ceil(ttl)), noreply=False
            )
        except self.pool.errors as exc:
            self.pool.failed(server, exc)
            raise
        return token if taken else None

    def unlock(self, name: str, token: str) -> None:
        key = lock_key(name)
        server = self._lock_server(key)
        try:
            value, cas = server.call("gets", key)
            if value == token.encode():
                # a negative exptime expires the item at once: compare-and-delete
                server.call("cas", key, b"", cas, expire=-1, noreply=False)
        except self.pool.errors as exc:
            self.pool.failed(server, exc)
            raise

    def close(self) -> None:
        self.pool.close()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def from_url(url: str, *, timeout: float = 1.0, **options: Any) -> MemcachedBackend:
    """Build a memcached tier from ``memcached://host:11211[,host:port...][?options]``.

    Never connects: the first call does.

    :raises MissingExtraError: pymemcache is not installed.
    :raises ConfigError: a bad URL or an unknown option.
    """
    reject_unknown_options("memcached://", options, ())
    try:
        import pymemcache  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("memcached:// tiers", "memcached", "pymemcache") from exc
    config = parse_url(url)
    return MemcachedBackend(
        config.servers,
        timeout=config.timeout or timeout,
        pool_size=config.pool_size,
        dead_timeout=config.dead_timeout,
        max_item_size=config.max_item_size,
        max_rules=config.max_rules,
        max_ttl=config.max_ttl,
    )
