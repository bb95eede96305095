"""The memcached tier: one server or a consistent-hash pool, with a clear() that works.

A read of keys on one server is one multi-get that also fetches that server's
invalidation records (see :mod:`llmcache_memcached.invalidation`), so a clear made by any
process is seen by the very next read, in the same round trip. Writes tag each value with
the records' ``(gen, seq)`` as last seen on its server.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmcache.backends.base import CacheBackend, reject_unknown_options
from llmcache.errors import MissingExtraError

from .config import parse_url
from .invalidation import DEFAULT_MAX_RULES, ScopeState, StateCache, fresh_state
from .keys import entry_key, lock_key, namespace_of, pattern_scope, scope_key, whole_scope
from .pool import Server, ServerPool
from .values import (
    DEFAULT_MAX_ITEM_SIZE,
    HEADER,
    ITEM_OVERHEAD,
    MAGIC,
    expire_time,
    pack,
    payload,
)

if TYPE_CHECKING:
    from .async_backend import AsyncMemcachedBackend

__all__ = ["InvalidationContention", "MemcachedBackend", "async_from_url", "from_url"]

log = logging.getLogger("llmcache.memcached")

GLOBAL = scope_key(None)
CAS_ATTEMPTS = 32
VIEW_TTL = 1.0  # seconds a writer trusts the records it last read

_Item = tuple[str, str, str | None]  # llmcache key, memcached key, namespace record key


class InvalidationContention(RuntimeError):
    """An invalidation record kept changing under a compare-and-set, attempt after attempt."""


class MemcachedBackend(CacheBackend):
    """A memcached store for llmcache entries.

    :param servers: ``(host, port)`` tuples or Unix socket paths; several make a pool.
    :param timeout: seconds for connecting and for each socket operation.
    :param pool_size: idle connections kept per server (``None``: 16).
    :param dead_timeout: seconds a failed server of a pool is skipped (its keys are misses).
    :param max_item_size: memcached's item size limit (its ``-I``), in bytes.
    :param max_rules: invalidation rules kept per scope before a new generation replaces
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
        self._states = StateCache()
        # each server's records as this process last read them, and when (monotonic)
        self._views: dict[str, dict[str, tuple[ScopeState, float]]] = {
            server.name: {} for server in self.pool.servers
        }
        self._scope_keys: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"MemcachedBackend({[server.name for server in self.pool.servers]!r})"

    @property
    def server_failures(self) -> int:
        """Server failures this process has seen (each skips a server for a while)."""
        return self.pool.failures

    # -- keys ----------------------------------------------------------------------------

    def _item(self, key: str) -> _Item:
        namespace = namespace_of(key)
        if namespace is None:
            return key, entry_key(key), None
        record = self._scope_keys.get(namespace)
        if record is None:
            if len(self._scope_keys) > 4096:
                self._scope_keys.clear()
            record = self._scope_keys[namespace] = scope_key(namespace)
        return key, entry_key(key), record

    def _by_server(self, keys: Sequence[str]) -> dict[Server, list[_Item]]:
        groups: dict[Server, list[_Item]] = {}
        for key in dict.fromkeys(keys):
            item = self._item(key)
            groups.setdefault(self.pool.route(item[1]), []).append(item)
        return groups

    # -- reads ---------------------------------------------------------------------------

    def _record(self, server: Server, rkey: str, raw: bytes | None) -> ScopeState | None:
        """Parse a record fetched from ``server`` and remember it for writes."""
        state = None if raw is None else self._states.parse(raw)
        views = self._views[server.name]
        if state is None:
            views.pop(rkey, None)
        else:
            views[rkey] = (state, time.monotonic())
        return state

    def _open(
        self,
        key: str,
        value: bytes | None,
        glob: ScopeState | None,
        space: ScopeState | None,
        namespaced: bool,
        now: float,
    ) -> bytes | None:
        """Return the core's bytes of a stored value, or ``None`` if expired or cleared."""
        if value is None or glob is None or len(value) < HEADER.size:
            return None
        magic, flags, created, expires, g_gen, g_seq, n_gen, n_seq = HEADER.unpack_from(value)
        if magic != MAGIC or (expires and expires <= now):
            return None
        if g_gen != glob.gen or (g_seq < glob.top and glob.invalidates(key, g_seq, created)):
            return None
        if namespaced and (
            space is None
            or n_gen != space.gen
            or (n_seq < space.top and space.invalidates(key, n_seq, created))
        ):
            return None
        return payload(value, flags)

    def _keys_to_fetch(self, items: Sequence[_Item]) -> list[str]:
        """The entries' memcached keys and the records they need, for one server."""
        spaces = {item[2] for item in items if item[2] is not None}
        return [item[1] for item in items] + [GLOBAL, *spaces]

    def _decide(
        self, server: Server, items: Sequence[_Item], found: dict[str, bytes], now: float
    ) -> dict[str, bytes | None]:
        """Open what one server returned for ``items``."""
        glob = self._record(server, GLOBAL, found.get(GLOBAL))
        spaces = {rkey for _, _, rkey in items if rkey is not None}
        states = {rkey: self._record(server, rkey, found.get(rkey)) for rkey in spaces}
        return {
            key: self._open(
                key, found.get(mkey), glob, states.get(rkey) if rkey else None, bool(rkey), now
            )
            for key, mkey, rkey in items
        }

    def _decide_one(
        self, server: Server, key: str, mkey: str, rkey: str | None, found: dict[str, bytes]
    ) -> bytes | None:
        """Open what one server returned for one key (the hit path, written out)."""
        glob = self._record(server, GLOBAL, found.get(GLOBAL))
        if rkey is None:
            return self._open(key, found.get(mkey), glob, None, False, time.time())
        space = self._record(server, rkey, found.get(rkey))
        return self._open(key, found.get(mkey), glob, space, True, time.time())

    def get(self, key: str) -> bytes | None:
        # get_many's work for one key, written out: this is the hit path
        _, mkey, rkey = self._item(key)
        server = self.pool.route(mkey)
        if server.down_until and not self.pool.usable(server):
            if self.pool.all_down():
                raise self.pool.unavailable()
            return None
        client = server.acquire()
        try:
            found = client.fetch([mkey, GLOBAL] if rkey is None else [mkey, GLOBAL, rkey])
        except self.pool.errors as exc:
            self.pool.failed(server, exc)
            raise
        finally:
            server.release(client)
        if server.down_until:
            self.pool.succeeded(server)
        return self._decide_one(server, key, mkey, rkey, found)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys``: one multi-get per server.

        A server that fails or is being skipped makes its keys misses; the call raises only
        when no server answered.
        """
        if not keys:
            return []
        now = time.time()
        values: dict[str, bytes | None] = {}
        error: BaseException | None = None
        answered = False
        for server, items in self._by_server(keys).items():
            if not self.pool.usable(server):
                continue
            try:
                found = server.call("fetch", self._keys_to_fetch(items))
            except self.pool.errors as exc:
                self.pool.failed(server, exc)
                error = error or exc
                continue
            self.pool.succeeded(server)
            answered = True
            values.update(self._decide(server, items, found, now))
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

        def batch(server: Server, group: list[_Item]) -> None:
            views = self._writable(server, {rkey for _, _, rkey in group}, lifetime)
            glob = views[GLOBAL]
            values = {}
            for key, mkey, rkey in group:
                space = views[rkey] if rkey else None
                tags = (glob.gen, glob.seq, *((space.gen, space.seq) if space else (0, 0)))
                room = self.max_item_size - len(mkey) - ITEM_OVERHEAD
                value = pack(items[key], created=created, expires=expires, tags=tags, room=room)
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
        log.warning(
            "llmcache value of %d bytes for %r exceeds memcached's item size limit even "
            "compressed; not stored",
            size,
            key[:200],
        )

    def delete(self, keys: Sequence[str]) -> None:
        def batch(server: Server, group: list[_Item]) -> None:
            server.call("delete_many", [mkey for _, mkey, _ in group], noreply=False)

        self._each_server(keys, batch)

    def _each_server(
        self, keys: Sequence[str], action: Callable[[Server, list[_Item]], None]
    ) -> None:
        """Run ``action`` per server; skip servers marked down; raise the first failure."""
        error: BaseException | None = None
        tried = False
        for server, group in self._by_server(keys).items():
            if not self.pool.usable(server):
                continue
            tried = True
            try:
                action(server, group)
            except self.pool.errors as exc:
                self.pool.failed(server, exc)
                error = error or exc
                continue
            self.pool.succeeded(server)
        if error is not None:
            raise error
        if not tried and keys and self.pool.all_down():
            raise self.pool.unavailable()

    # -- invalidation records ------------------------------------------------------------

    def _writable(
        self, server: Server, spaces: Iterable[str | None], lifetime: float
    ) -> dict[str, ScopeState]:
        """Return ``server``'s records for tagging values that live ``lifetime`` seconds.

        A record is read (or created) when this process has not read it for
        :data:`VIEW_TTL` seconds (reads refresh it for free), and its ``max_ttl`` raised
        first when the value may outlive what it allows, so that rule expiry never uncovers
        a live entry. A value tagged with an outdated view is dead on arrival: safe, and
        rare, since the core reads a key before writing it.
        """

        def allow(state: ScopeState) -> ScopeState:
            return state if state.max_ttl >= lifetime else state.with_max_ttl(lifetime)

        views = self._views[server.name]
        wanted = [GLOBAL, *sorted(rkey for rkey in spaces if rkey is not None)]
        known: dict[str, ScopeState] = {}
        stale = []
        now = time.monotonic()
        for rkey in wanted:
            state, seen = views.get(rkey, (None, 0.0))
            if state is None or state.max_ttl < lifetime or now - seen > VIEW_TTL:
                stale.append(rkey)
            else:
                known[rkey] = state
        if stale:
            found = server.call("fetch", stale)
            for rkey in stale:
                state = self._record(server, rkey, found.get(rkey))
                if state is None or state.max_ttl < lifetime:
                    state = self._update(server, rkey, allow)
                known[rkey] = state
        return known

    def _update(
        self, server: Server, rkey: str, change: Callable[[ScopeState], ScopeState]
    ) -> ScopeState:
        """Apply ``change`` to ``server``'s record ``rkey`` with compare-and-set."""
        client = server.acquire()
        try:
            for attempt in range(CAS_ATTEMPTS):
                raw, cas = client.gets(rkey)
                current = None if raw is None else self._states.parse(raw)
                state = change(current or fresh_state())
                if current is not None and state is current:
                    stored = True
                elif raw is None:
                    stored = client.add(rkey, state.encode(), expire=0, noreply=False)
                else:  # replaces a valid record, or bytes that are no record at all
                    stored = client.cas(rkey, state.encode(), cas, expire=0, noreply=False)
                if stored:
                    self._views[server.name][rkey] = (state, time.monotonic())
                    return state
                time.sleep(random.uniform(0, 0.001 * (attempt + 1)))  # jitter
        finally:
            server.release(client)
        raise InvalidationContention(
            f"memcached record {rkey!r} on {server.name} changed {CAS_ATTEMPTS} times in a row"
        )

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> None:
        """Invalidate matching entries on every server; O(1) in the number of entries.

        memcached cannot list keys, so this records a rule (or a new generation when the
        pattern covers a whole scope) that every read checks. It cannot count what it
        removes, so it returns ``None``.

        :raises: the first server failure, after updating every server that answered: the
            entries of a server that could not be reached are not cleared.
        """
        now = time.time()
        cutoff = None if older_than is None else now - older_than
        namespace = pattern_scope(pattern)
        rkey = scope_key(namespace)
        rule = None if whole_scope(pattern, namespace) else pattern

        def change(state: ScopeState) -> ScopeState:
            return state.with_clear(rule, cutoff, now=now, max_rules=self.max_rules)

        error: BaseException | None = None
        for server in self.pool.servers:  # every server, even one being skipped
            try:
                self._update(server, rkey, change)
            except self.pool.errors as exc:
                self.pool.failed(server, exc)
                error = error or exc
                continue
            self.pool.succeeded(server)
        if error is not None:
            raise error
        return None

    # -- locks ---------------------------------------------------------------------------

    def _lock_server(self, key: str) -> Server:
        server = self.pool.route(key)
        if not self.pool.usable(server):
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
        self.pool.succeeded(server)
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
        self.pool.succeeded(server)

    def close(self) -> None:
        self.pool.close()


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


def async_from_url(url: str, *, timeout: float = 1.0, **options: Any) -> AsyncMemcachedBackend:
    """Build a memcached tier for an async client: reads on the event loop, the rest in
    worker threads (see :class:`~llmcache_memcached.async_backend.AsyncMemcachedBackend`).
    """
    from .async_backend import AsyncMemcachedBackend

    return AsyncMemcachedBackend(from_url(url, timeout=timeout, **options))
