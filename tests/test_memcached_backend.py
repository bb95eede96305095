"""The memcached tier against real memcached processes: one server and a 2-server pool.

The conformance suite runs on both; the rest shows what memcached needs beyond it:
clear() without key listing (across processes), its limits on keys, values and TTLs,
and per-server fail-open in a pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

from llmcache import ConfigError
from llmcache.backends.base import AsyncCacheBackend, CacheBackend
from llmcache.backends.globs import escape
from llmcache.backends.memory import MemoryBackend
from llmcache.testing import AsyncBackendSuite, BackendSuite
from llmcache_memcached import MemcachedBackend, ServerDown, async_from_url, from_url, parse_url
from llmcache_memcached.backend import VIEW_TTL
from llmcache_memcached.connection import connection_class, get_command
from llmcache_memcached.invalidation import CLOCK_MARGIN, ScopeState, fresh_state
from llmcache_memcached.keys import entry_key, pattern_scope, scope_key, whole_scope
from llmcache_memcached.pool import ServerPool
from tests.memcached_fixtures import (
    MemcachedServer,
    memcached_pool,
    memcached_server,
    memcached_servers,
    pool_url,
)

__all__ = ["memcached_pool", "memcached_server", "memcached_servers"]  # fixtures, used by name


_opened: list[Any] = []  # closed after each test by _close_what_the_test_opened


@pytest.fixture(autouse=True)
def _close_what_the_test_opened() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def raw(server: MemcachedServer) -> Client:
    """A plain pymemcache client on one server, to look behind the backend."""
    client = Client(("127.0.0.1", server.port), connect_timeout=2, timeout=2, default_noreply=False)
    _opened.append(client)
    return client


def connect(url: str, **options: Any) -> MemcachedBackend:
    """``from_url``, closed after the test."""
    backend = from_url(url, **options)
    _opened.append(backend)
    return backend


def key(namespace: str = "t") -> str:
    return f"llmcache:{namespace}:{uuid.uuid4().hex}"


# -- conformance ---------------------------------------------------------------------------


class _Memcached:
    ttl_resolution = 1.0
    counts_clear = False
    url: str


class TestMemcachedBackend(_Memcached, BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, memcached_server: MemcachedServer) -> None:
        self.url = memcached_server.url

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestAsyncMemcachedBackend(_Memcached, AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, memcached_server: MemcachedServer) -> None:
        self.url = memcached_server.url

    async def make_async_backend(self) -> AsyncCacheBackend:
        return async_from_url(self.url)


class TestMemcachedPool(_Memcached, BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, memcached_pool: list[MemcachedServer]) -> None:
        self.url = pool_url(memcached_pool)

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestAsyncMemcachedPool(_Memcached, AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, memcached_pool: list[MemcachedServer]) -> None:
        self.url = pool_url(memcached_pool)

    async def make_async_backend(self) -> AsyncCacheBackend:
        return async_from_url(self.url)


@pytest.fixture
def single(memcached_server: MemcachedServer) -> Iterator[MemcachedBackend]:
    backend = from_url(memcached_server.url)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def pooled(memcached_pool: list[MemcachedServer]) -> Iterator[MemcachedBackend]:
    backend = from_url(pool_url(memcached_pool))
    try:
        yield backend
    finally:
        backend.close()


# -- URLs and registration -----------------------------------------------------------------


def test_url_with_several_hosts_makes_a_pool() -> None:
    config = parse_url("memcached://a:11211,b:11212,[::1]:11213,c?pool_size=4&timeout=0.5")
    assert config.servers == (("a", 11211), ("b", 11212), ("::1", 11213), ("c", 11211))
    assert config.pool_size == 4
    assert config.timeout == 0.5
    backend = from_url("memcached://a:1,b:2")
    assert [server.name for server in backend.pool.servers] == ["a:1", "b:2"]


def test_unix_socket_url() -> None:
    assert parse_url("memcached:///run/memcached.sock").servers == ("/run/memcached.sock",)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memcached://h:1?size=3", "unknown option 'size'"),
        ("memcached://h:1?pool_size=0", "pool_size='0'"),
        ("memcached://h:1?dead_timeout=soon", "dead_timeout='soon'"),
        ("memcached://h:notaport", "bad memcached server"),
        ("memcached://", "names no memcached server"),
        ("memcached://h:1,h:1", "twice"),
    ],
    ids=["unknown-option", "zero-pool", "bad-dead-timeout", "bad-port", "no-server", "twice"],
)
def test_bad_url_names_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_url(url)


def test_password_is_refused_without_being_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        from_url("memcached://user:hunter2@h:11211")
    assert "hunter2" not in str(info.value)


def test_unknown_factory_option_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        from_url("memcached://h:1", colour="blue")


WITHOUT_PYMEMCACHE = """
import sys
sys.modules["pymemcache"] = None  # as if it were not installed
import llmcache, llmcache_memcached.plugin
from llmcache import MissingExtraError
from llmcache_memcached import from_url
try:
    from_url("memcached://127.0.0.1:11211")
except MissingExtraError as error:
    assert isinstance(error, ImportError)
    print(error)
"""


def test_without_pymemcache_the_plugin_loads_and_the_url_names_the_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYMEMCACHE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "pip install 'llmcache[memcached]'" in done.stdout


def test_plugin_registers_the_scheme_through_the_entry_point() -> None:
    (point,) = [ep for ep in entry_points(group="llmcache") if ep.name == "memcached"]
    registered: dict[str, tuple[Any, Any]] = {}

    def register(scheme: str, factory: Any, async_factory: Any = None) -> None:
        registered[scheme] = (factory, async_factory)

    point.load().llmcache_register_backends(register)
    assert registered == {"memcached": (from_url, async_from_url)}


def test_construction_never_connects() -> None:
    port = free_closed_port()
    backend = connect(f"memcached://127.0.0.1:{port}")  # nothing listens: no error yet
    with pytest.raises(ConnectionRefusedError):
        backend.get("k")


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_timeout_bounds_a_call_to_a_server_that_never_answers() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        backend = connect(f"memcached://127.0.0.1:{port}", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            backend.get("k")
        assert time.monotonic() - started < 1.5


async def test_async_read_on_a_silent_server_times_out_and_recovers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        backend = async_from_url(f"memcached://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await backend.get("k")
        assert time.monotonic() - started < 1.5
        await backend.close()


async def test_a_cancelled_async_read_never_leaves_a_half_read_connection(
    memcached_server: MemcachedServer,
) -> None:
    backend = async_from_url(memcached_server.url)
    big, small = key(), key()
    await backend.set(big, os.urandom(1_000_000), 60)
    await backend.set(small, b"small", 60)
    for step in range(40):  # cancel at various points of a long reply
        task = asyncio.ensure_future(backend.get(big))
        for _ in range(step):
            await asyncio.sleep(0)  # each turn of the loop reads one more chunk
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await backend.get(small) == b"small"
    await backend.close()


async def test_async_reads_skip_a_dead_pool_server(
    memcached_servers: Callable[[int], list[MemcachedServer]],
) -> None:
    servers = memcached_servers(2)
    backend = async_from_url(pool_url(servers, "dead_timeout=30&timeout=0.5"))
    keys = [key() for _ in range(40)]
    await backend.set_many(dict.fromkeys(keys, b"v"), 300)
    victim, survivor = servers
    live = [k for k in keys if backend.backend.pool.route(entry_key(k)).name == survivor.address]
    victim.stop()
    first_dead = next(k for k in keys if k not in live)
    with pytest.raises((OSError, MemcacheError)):  # the first read there fails, and is counted
        await backend.get(first_dead)
    expected = [b"v" if k in live else None for k in keys]
    assert [await backend.get(k) for k in keys] == expected  # then its keys are misses
    assert await backend.get_many(keys) == expected
    await backend.close()


# -- the pool ------------------------------------------------------------------------------


def test_pool_spreads_entries_over_both_servers(
    pooled: MemcachedBackend, memcached_pool: list[MemcachedServer]
) -> None:
    before = [server.items() for server in memcached_pool]
    pooled.set_many({key(): b"v" for _ in range(200)}, 60)
    grown = [server.items() - was for server, was in zip(memcached_pool, before, strict=True)]
    assert all(count >= 50 for count in grown), grown  # about 100 each
    assert sum(grown) >= 200


def test_adding_a_server_moves_few_keys() -> None:
    two = ServerPool([("a", 1), ("b", 2)], timeout=1)
    three = ServerPool([("a", 1), ("b", 2), ("c", 3)], timeout=1)
    keys = [f"llmcache:ns:{i}" for i in range(3000)]
    moved = [k for k in keys if two.route(k).name != three.route(k).name]
    assert all(three.route(k).name == "c:3" for k in moved)  # only onto the new server
    assert 0.25 < len(moved) / len(keys) < 0.42  # about a third


def test_get_many_is_one_multi_get_per_server(
    pooled: MemcachedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [key() for _ in range(40)]
    pooled.set_many(dict.fromkeys(keys, b"v"), 60)
    calls: list[int] = []
    client_class = connection_class()
    real = client_class.fetch

    def counted(self: Any, command: bytes) -> Any:
        calls.append(len(command.split()) - 1)  # get k1 k2 ...
        return real(self, command)

    monkeypatch.setattr(client_class, "fetch", counted)
    assert pooled.get_many(keys) == [b"v"] * 40
    assert len(calls) == 2
    assert sum(calls) == 40 + 2 * 1  # each batch adds the record of the keys' namespace


def test_killing_one_pool_server_moves_only_its_keys(
    memcached_servers: Callable[[int], list[MemcachedServer]],
) -> None:
    servers = memcached_servers(2)
    backend = connect(pool_url(servers, "dead_timeout=0.5&timeout=0.5"))
    keys = [key() for _ in range(60)]
    backend.set_many(dict.fromkeys(keys, b"v"), 300)
    victim, survivor = servers
    on_survivor = [k for k in keys if backend.pool.route(entry_key(k)).name == survivor.address]
    on_victim = [k for k in keys if k not in on_survivor]
    assert on_survivor
    assert on_victim

    victim.stop()
    raised = moved_hits = 0
    deadline = time.monotonic() + 2.5
    rounds = 0
    while time.monotonic() < deadline and rounds < 500:
        rounds += 1
        for k in keys[rounds % 6 :: 6]:
            try:
                value = backend.get(k)
                backend.set(k, b"v", 300)
            except (OSError, MemcacheError):
                raised += 1  # the dead server's failure, once per dead_timeout at most
                continue
            if k in on_survivor:
                assert value == b"v"  # the other server keeps serving its own hits
            else:
                assert value in (None, b"v")  # moved: a miss, then the survivor holds it
                moved_hits += value == b"v"
    assert rounds > 20
    assert moved_hits > 0
    assert backend.get_many(keys) == [b"v"] * len(keys)
    assert 1 <= raised <= 2 * (2.5 / 0.5) + 2  # bounded by the retry cadence, not the load


def test_a_returning_pool_server_serves_nothing_it_held_before_it_failed(
    memcached_servers: Callable[[int], list[MemcachedServer]],
) -> None:
    from tests.faultproxy import running_proxy

    home, other = memcached_servers(2)
    with running_proxy(home.port) as proxy:
        url = f"memcached://{proxy.address},{other.address}?dead_timeout=0.3&timeout=0.5"
        backend = connect(url)
        keys = [key("ns") for _ in range(40)]
        backend.set_many(dict.fromkeys(keys, b"old"), 300)
        away = [k for k in keys if backend.pool.route(entry_key(k)).name == proxy.address]
        assert away

        proxy.set_mode("reset")  # the server lives on, with its entries, out of reach
        with pytest.raises((OSError, MemcacheError)):
            backend.get(away[0])
        assert backend.get(away[1]) is None  # moved to the other server: a miss, no wait
        with pytest.raises((OSError, MemcacheError)):
            backend.clear("llmcache:ns:*")  # reaches only the other server
        backend.set(away[1], b"new", 300)  # written where the key lives meanwhile
        assert backend.get(away[1]) == b"new"

        proxy.set_mode("pass")
        time.sleep(0.35)  # dead_timeout: the next call tries the server again
        assert backend.get_many(away) == [None] * len(away)  # cleared, though it kept them
        bystander = connect(url)  # a process that never saw the server away
        assert bystander.get_many(away) == [None] * len(away)
        backend.set(away[2], b"again", 300)  # and it serves what is written from now on
        assert backend.pool.route(entry_key(away[2])).name == proxy.address
        assert bystander.get(away[2]) == b"again"


def test_a_pool_with_every_server_down_raises_fast(
    memcached_servers: Callable[[int], list[MemcachedServer]],
) -> None:
    servers = memcached_servers(2)
    backend = connect(pool_url(servers, "dead_timeout=30"))
    for server in servers:
        server.stop()
    with pytest.raises((OSError, MemcacheError)):
        backend.get_many([key() for _ in range(20)])
    started = time.monotonic()
    with pytest.raises(ServerDown):
        backend.get(key())
    assert time.monotonic() - started < 0.1


def test_a_forked_child_opens_its_own_connections(single: MemcachedBackend) -> None:
    k = key()
    single.set(k, b"shared", 60)
    assert single.get(k) == b"shared"  # the parent now holds an idle connection
    pid = os.fork()
    if pid == 0:  # the child: its reads must not share the parent's socket
        try:
            code = 0 if all(single.get(k) == b"shared" for _ in range(300)) else 1
        except BaseException:
            code = 2
        os._exit(code)
    reads = [single.get(k) for _ in range(300)]
    _, status = os.waitpid(pid, 0)
    assert reads == [b"shared"] * 300
    assert os.waitstatus_to_exitcode(status) == 0


# -- memcached's limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["x" * 400, "with space", "tab\tand\nnewline", "bell\x07", "ünïcödé", "~tilde"],
    ids=["long", "space", "control", "bell", "unicode", "own-prefix"],
)
def test_unsafe_keys_are_hashed_and_round_trip(
    single: MemcachedBackend, memcached_server: MemcachedServer, name: str
) -> None:
    k = f"llmcache:t:{uuid.uuid4().hex}:{name}"
    single.set(k, b"value", 60)
    assert single.get(k) == b"value"
    stored = entry_key(k)
    assert len(stored) <= 250
    assert stored.isascii()
    assert " " not in stored
    assert raw(memcached_server).get(stored) is not None


def test_long_keys_sharing_250_bytes_stay_distinct(single: MemcachedBackend) -> None:
    stem = "llmcache:t:" + "p" * 300
    single.set_many({stem + "1": b"one", stem + "2": b"two"}, 60)
    assert single.get_many([stem + "1", stem + "2"]) == [b"one", b"two"]


def ttl_left(server: MemcachedServer, stored_key: str) -> int:
    line = raw(server).raw_command(b"mg " + stored_key.encode() + b" t", end_tokens=b"\r\n")
    return int(line.split(b" t", 1)[1].split()[0])


def test_ttl_over_30_days_is_stored_and_readable(
    single: MemcachedBackend, memcached_server: MemcachedServer
) -> None:
    k = key()
    forty_days = 40 * 86400
    single.set(k, b"long", forty_days)
    assert single.get(k) == b"long"
    assert forty_days <= ttl_left(memcached_server, entry_key(k)) <= forty_days + 5


def test_forever_is_memcacheds_zero(
    single: MemcachedBackend, memcached_server: MemcachedServer
) -> None:
    k = key()
    single.set(k, b"v", None)
    assert ttl_left(memcached_server, entry_key(k)) == -1
    single.set(k, b"v", 10.2)
    assert 11 <= ttl_left(memcached_server, entry_key(k)) <= 12  # rounded up, never shorter


def test_expiry_is_exact_although_memcached_counts_seconds(single: MemcachedBackend) -> None:
    k = key()
    single.set(k, b"v", 0.3)
    assert single.get(k) == b"v"
    time.sleep(0.45)
    assert single.get(k) is None


def test_ttl_zero_stores_nothing(single: MemcachedBackend) -> None:
    k = key()
    single.set(k, b"old", 60)
    single.set(k, b"new", 0)
    assert single.get(k) is None


def test_oversized_compressible_value_is_compressed(
    single: MemcachedBackend, memcached_server: MemcachedServer
) -> None:
    k = key()
    value = b"0123456789abcdef" * (3 * 65536)  # 3 MiB of text
    single.set(k, value, 60)
    assert single.get(k) == value
    assert len(raw(memcached_server).get(entry_key(k))) < 1024 * 1024
    assert single.oversized == 0


def test_oversized_incompressible_value_is_skipped_without_error(
    single: MemcachedBackend, caplog: pytest.LogCaptureFixture
) -> None:
    k, small = key(), key()
    with caplog.at_level(logging.WARNING, logger="llmcache.memcached"):
        single.set_many({k: os.urandom(2 * 1024 * 1024), small: b"fits"}, 60)
    assert single.get_many([k, small]) == [None, b"fits"]
    assert single.oversized == 1
    assert "item size limit" in caplog.text


def test_server_with_a_smaller_item_limit_skips_instead_of_failing(
    single: MemcachedBackend,
) -> None:
    single.max_item_size = 8 * 1024 * 1024  # the backend believes in 8 MiB; the server: 1 MiB
    k = key()
    single.set(k, os.urandom(1_600_000), 60)
    assert single.get(k) is None
    assert single.oversized == 1
    single.set(k, b"small", 60)
    assert single.get(k) == b"small"  # the connection is still good


# -- clear across processes ----------------------------------------------------------------


@pytest.fixture(params=["single", "pool"])
def two_processes(
    request: pytest.FixtureRequest,
    memcached_server: MemcachedServer,
    memcached_pool: list[MemcachedServer],
) -> Iterator[tuple[MemcachedBackend, MemcachedBackend]]:
    """Two backends that share nothing but the servers, like two processes."""
    url = memcached_server.url if request.param == "single" else pool_url(memcached_pool)
    one, two = from_url(url), from_url(url)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def test_clear_all_of_a_namespace_is_seen_by_another_process(
    two_processes: tuple[MemcachedBackend, MemcachedBackend],
) -> None:
    writer, clearer = two_processes
    ns, other = uuid.uuid4().hex, uuid.uuid4().hex
    keys = [key(ns) for _ in range(30)]
    kept = key(other)
    writer.set_many(dict.fromkeys([*keys, kept], b"v"), 600)
    assert writer.get_many(keys) == [b"v"] * 30  # the writer has seen the records
    clearer.clear(f"llmcache:{ns}:*")
    assert writer.get_many(keys) == [None] * 30
    assert writer.get(kept) == b"v"  # another namespace is untouched
    writer.set(keys[0], b"new", 600)
    assert writer.get(keys[0]) == b"new"  # and the cleared namespace works again


def test_clear_by_glob_is_seen_by_another_process(
    two_processes: tuple[MemcachedBackend, MemcachedBackend],
) -> None:
    writer, clearer = two_processes
    ns = uuid.uuid4().hex
    user1 = [f"llmcache:{ns}:user_1:{i}" for i in range(20)]
    user2 = [f"llmcache:{ns}:user_2:{i}" for i in range(20)]
    writer.set_many(dict.fromkeys(user1 + user2, b"v"), 600)
    clearer.clear(f"llmcache:{ns}:user_1:*")
    assert writer.get_many(user1) == [None] * 20
    assert writer.get_many(user2) == [b"v"] * 20
    assert clearer.get_many(user1 + user2) == [None] * 20 + [b"v"] * 20


def test_clear_by_age_is_seen_by_another_process(
    two_processes: tuple[MemcachedBackend, MemcachedBackend],
) -> None:
    writer, clearer = two_processes
    ns = uuid.uuid4().hex
    old = [key(ns) for _ in range(10)]
    new = [key(ns) for _ in range(10)]
    writer.set_many(dict.fromkeys(old, b"old"), 600, created=time.time() - 3600)
    writer.set_many(dict.fromkeys(new, b"new"), 600)
    clearer.clear(f"llmcache:{ns}:*", older_than=600)
    assert writer.get_many(old + new) == [None] * 10 + [b"new"] * 10
    writer.set(old[0], b"promoted", 600, created=time.time() - 3600)
    assert writer.get(old[0]) == b"promoted"  # a write after the clear is not covered


def test_clear_of_everything_crosses_namespaces(
    two_processes: tuple[MemcachedBackend, MemcachedBackend],
) -> None:
    writer, clearer = two_processes
    keys = [key(uuid.uuid4().hex) for _ in range(10)] + [f"plain-{uuid.uuid4().hex}"]
    writer.set_many(dict.fromkeys(keys, b"v"), 600)
    clearer.clear()
    assert writer.get_many(keys) == [None] * len(keys)


def test_cross_namespace_glob_is_a_global_rule(
    two_processes: tuple[MemcachedBackend, MemcachedBackend],
) -> None:
    writer, clearer = two_processes
    tag = uuid.uuid4().hex
    hit = [f"llmcache:{ns}:{tag}:x" for ns in ("a", "b", "c")]
    miss = [f"llmcache:{ns}:{tag}:y" for ns in ("a", "b", "c")]
    writer.set_many(dict.fromkeys(hit + miss, b"v"), 600)
    clearer.clear(f"llmcache:*:{escape(tag)}:x")
    assert writer.get_many(hit + miss) == [None] * 3 + [b"v"] * 3


def test_a_writer_with_a_stale_view_never_revives_cleared_entries(
    two_processes: tuple[MemcachedBackend, MemcachedBackend],
) -> None:
    writer, clearer = two_processes
    ns = uuid.uuid4().hex
    keys = [key(ns) for _ in range(10)]
    writer.set_many(dict.fromkeys(keys, b"before"), 600)
    clearer.clear(f"llmcache:{ns}:*")
    # the writer has not read since the clear: it writes with the old generation's tags
    writer.set(keys[0], b"after", 600)
    assert clearer.get_many(keys[1:]) == [None] * 9
    assert writer.get(keys[0]) in (None, b"after")  # never "before"


def test_a_process_that_only_writes_catches_up_with_a_clear(
    two_processes: tuple[MemcachedBackend, MemcachedBackend],
) -> None:
    writer, clearer = two_processes
    ns = uuid.uuid4().hex
    writer.set(key(ns), b"v", 600)
    clearer.clear(f"llmcache:{ns}:*")
    time.sleep(VIEW_TTL + 0.1)
    fresh = key(ns)
    writer.set(fresh, b"after", 600)  # no read in between: the writer re-reads the records
    assert clearer.get(fresh) == b"after"


def test_clear_from_a_real_subprocess_is_never_missed(
    memcached_pool: list[MemcachedServer],
) -> None:
    url = pool_url(memcached_pool)
    reader = connect(url)
    ns = uuid.uuid4().hex
    keys = [key(ns) for _ in range(20)]
    reader.set_many(dict.fromkeys(keys, b"v"), 600)
    assert reader.get_many(keys) == [b"v"] * 20
    code = (
        "import sys; from llmcache_memcached import from_url; "
        "from_url(sys.argv[1]).clear(sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", code, url, f"llmcache:{ns}:*"], check=True, timeout=60)
    assert reader.get_many(keys) == [None] * 20


def test_concurrent_clears_and_writes_never_lose_a_clear(pooled: MemcachedBackend) -> None:
    ns = uuid.uuid4().hex
    url = ",".join(server.name for server in pooled.pool.servers)
    clearers = [connect(f"memcached://{url}") for _ in range(4)]
    groups = [[f"llmcache:{ns}:g{g}:{i}" for i in range(10)] for g in range(4)]
    pooled.set_many({k: b"v" for group in groups for k in group}, 600)
    errors: list[BaseException] = []

    def clear(backend: MemcachedBackend, group: int) -> None:
        try:
            backend.clear(f"llmcache:{ns}:g{group}:*")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=clear, args=(c, g)) for g, c in enumerate(clearers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert pooled.get_many([k for group in groups for k in group]) == [None] * 40


def test_clear_is_constant_work_whatever_the_store_holds(
    memcached_servers: Callable[[int], list[MemcachedServer]],
) -> None:
    (server,) = memcached_servers(1)
    backend = connect(server.url)

    def commands_for_clear(pattern: str) -> int:
        def total() -> int:
            stats = server.stats()
            return sum(stats[n] for n in ("cmd_get", "cmd_set", "cas_hits", "cas_badval"))

        before = total()
        backend.clear(pattern)
        return total() - before

    backend.set(key("small"), b"v", 600)
    small = commands_for_clear("llmcache:small:x*")
    backend.set_many({key("big"): b"v" for _ in range(5000)}, 600)
    big = commands_for_clear("llmcache:big:x*")
    assert small == big <= 3  # a read and a compare-and-set


def test_rules_stay_bounded_and_never_serve_a_cleared_entry(
    single: MemcachedBackend, memcached_server: MemcachedServer
) -> None:
    ns = uuid.uuid4().hex
    single.max_rules = 8
    for round_ in range(30):
        k = f"llmcache:{ns}:u{round_}:x"
        single.set(k, b"v", 600)
        single.clear(f"llmcache:{ns}:u{round_}:*")
        assert single.get(k) is None
        record = ScopeState.decode(raw(memcached_server).get(scope_key(ns)))
        assert len(record.rules) <= 8


def test_a_lost_record_turns_entries_into_misses_never_into_stale_hits(
    single: MemcachedBackend, memcached_server: MemcachedServer
) -> None:
    ns = uuid.uuid4().hex
    k = key(ns)
    single.set(k, b"v", 600)
    raw(memcached_server).delete(scope_key(ns))  # evicted, say
    assert single.get(k) is None
    single.set(k, b"again", 600)
    assert single.get(k) == b"again"


def test_clear_with_a_server_down_raises_after_clearing_the_others(
    memcached_servers: Callable[[int], list[MemcachedServer]],
) -> None:
    servers = memcached_servers(2)
    backend = connect(pool_url(servers, "timeout=0.5"))
    ns = uuid.uuid4().hex
    keys = [key(ns) for _ in range(40)]
    backend.set_many(dict.fromkeys(keys, b"v"), 600)
    servers[0].stop()
    with pytest.raises((OSError, MemcacheError)):
        backend.clear(f"llmcache:{ns}:*")
    survivor = [k for k in keys if backend.pool.route(entry_key(k)).name == servers[1].address]
    assert survivor
    assert backend.get_many(survivor) == [None] * len(survivor)


KEYS = [f"llmcache:{ns}:{user}:{q}" for ns in ("a", "b") for user in ("u1", "u2") for q in "xy"]
PATTERNS = [
    None,
    "*",
    "llmcache:a:*",
    "llmcache:a:u1:*",
    "llmcache:b:u?:x",
    "llmcache:*:u2:*",
    "llmcache:a:u1:x",
]
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("set"), st.integers(0, 1), st.sampled_from(KEYS), st.sampled_from([0, 100])
        ),
        st.tuples(st.just("get"), st.integers(0, 1), st.sampled_from(KEYS), st.just(0)),
        st.tuples(
            st.just("clear"),
            st.integers(0, 1),
            st.sampled_from(PATTERNS),
            st.sampled_from([-1, 0, 50]),
        ),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_no_sequence_of_writes_and_clears_serves_a_cleared_entry(
    memcached_pool: list[MemcachedServer], ops: list[tuple[str, int, Any, int]]
) -> None:
    """Two "processes" share a pool; the memory tier is the oracle of what clear means."""
    url = pool_url(memcached_pool)
    processes = [from_url(url), from_url(url)]
    processes[0].clear()  # a fresh store for this example
    oracle = MemoryBackend()
    try:
        for op, who, arg, number in ops:
            backend = processes[who]
            if op == "set":
                value = uuid.uuid4().bytes
                created = time.time() - number
                backend.set(arg, value, 600, created=created)
                oracle.set(arg, value, 600, created=created)
            elif op == "clear":
                older_than = None if number < 0 else float(number)
                backend.clear(arg, older_than)
                oracle.clear(arg, older_than)
            else:
                got, expected = backend.get(arg), oracle.get(arg)
                assert got in (None, expected)  # a miss is allowed, a stale value never
        for backend in processes:
            assert all(backend.get(k) in (None, oracle.get(k)) for k in KEYS)
        writer, reader = processes
        for k in KEYS:  # a writer that has read its records writes live entries
            assert writer.get(k) in (None, oracle.get(k))
            writer.set(k, b"fresh", 600)
            assert reader.get(k) == b"fresh"
    finally:
        for backend in processes:
            backend.close()


# -- invalidation records, without a server ------------------------------------------------


def test_whole_scope_patterns() -> None:
    assert pattern_scope("llmcache:ns:user_1:*") == "ns"
    assert pattern_scope("llmcache:n?:*") is None
    assert pattern_scope("llmcache-test-x:a*") is None
    assert whole_scope(None, None)
    assert whole_scope("*", None)
    assert whole_scope("llmcache:ns:*", "ns")
    assert whole_scope("llmcache:ns:**", "ns")
    assert not whole_scope("llmcache:ns:a*", "ns")
    assert not whole_scope("llmcache:ns:\\*", "ns")


def test_a_rule_expires_once_nothing_it_covers_can_live() -> None:
    state = fresh_state().with_max_ttl(3600)
    now = 1_000_000.0
    state = state.with_clear("llmcache:ns:a*", None, now=now)
    assert len(state.rules) == 1
    later = state.with_clear("llmcache:ns:b*", None, now=now + 3600 + CLOCK_MARGIN - 1)
    assert len(later.rules) == 2
    expired = state.with_clear("llmcache:ns:b*", None, now=now + 3600 + CLOCK_MARGIN + 1)
    assert [rule.pattern for rule in expired.rules] == ["llmcache:ns:b*"]
    forever = fresh_state().with_max_ttl(float("inf")).with_clear("a*", None, now=now)
    assert len(forever.with_clear("b*", None, now=now + 10**9).rules) == 2


def test_a_wider_rule_replaces_the_narrower_ones() -> None:
    state = fresh_state().with_max_ttl(600)
    for pattern in ("llmcache:ns:user_1:a*", "llmcache:ns:user_1:b", "llmcache:ns:user_2:*"):
        state = state.with_clear(pattern, None, now=1.0)
    state = state.with_clear("llmcache:ns:user_1:*", None, now=2.0)
    assert sorted(rule.pattern or "" for rule in state.rules) == [
        "llmcache:ns:user_1:*",
        "llmcache:ns:user_2:*",
    ]
    aged = state.with_clear("llmcache:ns:user_2:*", 100.0, now=3.0)  # age-limited: keeps it
    assert len(aged.rules) == 3


def test_only_rules_newer_than_an_entry_apply_to_it() -> None:
    state = fresh_state().with_max_ttl(600)
    tags = []
    for pattern, cutoff in [("a*", None), ("b*", 50.0), (None, 10.0), ("c?", None)]:
        tags.append(state.seq)  # what an entry written just before this clear carries
        state = state.with_clear(pattern, cutoff, now=100.0)
    before_all, before_b, before_whole, before_c = tags
    assert state.invalidates("a1", before_all, created=90.0)
    assert not state.invalidates("a1", before_b, created=90.0)  # written after "a*"
    assert state.invalidates("b1", before_b, created=40.0)
    assert not state.invalidates("b1", before_b, created=60.0)  # younger than the cutoff
    assert state.invalidates("zz", before_whole, created=5.0)  # the whole scope, by age
    assert not state.invalidates("zz", before_whole, created=20.0)
    assert state.invalidates("c1", before_c, created=99.0)
    assert not state.invalidates("c12", before_c, created=99.0)
    assert not state.invalidates("c1", state.seq, created=99.0)  # written after every rule


def test_too_many_rules_start_a_new_generation() -> None:
    state = fresh_state().with_max_ttl(float("inf"))
    for i in range(4):
        state = state.with_clear(f"a{i}*", None, now=1.0, max_rules=4)
    assert len(state.rules) == 4
    bumped = state.with_clear("b*", None, now=1.0, max_rules=4)
    assert bumped.gen != state.gen
    assert bumped.rules == ()


def test_records_round_trip_and_garbage_is_refused() -> None:
    state = fresh_state().with_max_ttl(float("inf")).with_clear("a*", 5.0, now=9.0)
    again = ScopeState.decode(state.encode())
    assert (again.gen, again.seq, again.max_ttl) == (state.gen, state.seq, state.max_ttl)
    assert [(r.seq, r.pattern, r.cutoff) for r in again.rules] == [(state.seq, "a*", 5.0)]
    with pytest.raises(ValueError, match="record"):
        ScopeState.decode(b"garbage")


# -- server statistics ---------------------------------------------------------------------


def test_server_stats_reports_each_servers_own_counters(
    memcached_servers: Callable[[int], list[MemcachedServer]],
) -> None:
    servers = memcached_servers(2)
    backend = connect(pool_url(servers))
    keys = [key() for _ in range(40)]
    backend.set_many(dict.fromkeys(keys, b"v" * 100), 600)
    backend.get_many([*keys, key()])
    stats = backend.server_stats()
    assert list(stats) == [server.address for server in servers]
    for server in servers:
        counters = stats[server.address]
        truth = server.stats()
        assert counters["curr_items"] == truth["curr_items"] > 0  # entries and records
        assert counters["bytes"] == truth["bytes"] > 0
        for name in ("get_hits", "get_misses", "evictions"):
            assert isinstance(counters[name], int)
        assert isinstance(counters["version"], str)
    entries_found = sum(int(stats[s.address]["get_hits"]) for s in servers)
    assert entries_found >= 40


def test_server_stats_of_a_pool_with_a_dead_server_reports_the_others(
    memcached_servers: Callable[[int], list[MemcachedServer]],
) -> None:
    servers = memcached_servers(2)
    backend = connect(pool_url(servers, "timeout=0.5"))
    servers[0].stop()
    stats = backend.server_stats()
    assert stats[servers[0].address] == {}
    assert stats[servers[1].address]["curr_items"] == 0
    servers[1].stop()
    with pytest.raises((OSError, MemcacheError)):
        backend.server_stats()


def test_llmcache_stats_shows_memcached_server_counters(memcached_server: MemcachedServer) -> None:
    from llmcache.tools.inventory import inspect_store, open_store

    backend = connect(memcached_server.url)
    backend.set(key(), b"v", 600)
    tier = open_store(memcached_server.url)
    try:
        report = inspect_store(tier).as_dict()
    finally:
        tier.backend.close()
    assert report["listable"] is False
    counters = report["servers"][memcached_server.address]
    assert counters["curr_items"] == memcached_server.items() >= 1
    assert counters["bytes"] > 0


# -- locks ---------------------------------------------------------------------------------


def test_lock_is_exclusive_until_unlocked_or_expired(pooled: MemcachedBackend) -> None:
    name = key() + ":lock"
    token = pooled.try_lock(name, 1.0)
    assert token is not None
    assert pooled.try_lock(name, 1.0) is None
    pooled.unlock(name, "not-the-token")
    assert pooled.try_lock(name, 1.0) is None
    pooled.unlock(name, token)
    second = pooled.try_lock(name, 1.0)
    assert second is not None
    time.sleep(2.2)
    assert pooled.try_lock(name, 1.0) is not None  # the holder died: the lock expired


# -- end to end, through CachedClient ------------------------------------------------------


def ask(client: Any, question: str, **options: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": question}], **options
    )


def test_cached_client_survives_killing_one_pool_server(
    memcached_servers: Callable[[int], list[MemcachedServer]],
    make_client: Callable[..., Any],
    sim: Any,
) -> None:
    servers = memcached_servers(2)
    url = pool_url(servers, "dead_timeout=0.5&timeout=0.5")
    ns = f"kill-{uuid.uuid4().hex[:8]}"
    client = make_client(tiers=[url], namespace=ns, default_ttl=600)
    questions = [f"question {i}?" for i in range(24)]
    keys = {q: ask(client, q).cache_key for q in questions}
    assert all(server.items() > 0 for server in servers)  # both servers hold entries
    router = ServerPool([("127.0.0.1", s.port) for s in servers], timeout=1)
    victim, survivor = servers
    on_survivor = {
        q
        for q, k in keys.items()
        if router.route(entry_key(f"llmcache:{ns}:{k}")).name == survivor.address
    }
    assert 0 < len(on_survivor) < len(questions)

    victim.stop()
    deadline = time.monotonic() + 2.5
    rounds = 0
    while time.monotonic() < deadline and rounds < 200:
        rounds += 1
        for question in questions:
            response = ask(client, question)  # never raises: fail-open
            assert response.choices[0].message.content
            if question in on_survivor:
                assert response.cache_hit
                assert response.cache_tier == "L1:memcached"
    assert rounds >= 3
    stats = client.stats()
    assert stats.errors >= 1  # the dead server's failures are counted
    assert stats.tier_hits["L1:memcached"] >= rounds * len(on_survivor)


CLEAR_IN_A_SUBPROCESS = """
import sys
from openai import OpenAI
from llmcache import CachedClient

url, base_url, namespace, pattern, older_than = sys.argv[1:6]
client = CachedClient(OpenAI(api_key="x", base_url=base_url), tiers=[url], namespace=namespace)
client.clear_cache(key=pattern or None, older_than=float(older_than) if older_than else None)
client.close()
"""


@pytest.mark.parametrize(
    ("pattern", "older_than", "cleared"),
    [("", "", {"user_1", "user_2"}), ("user_1:*", "", {"user_1"}), ("", "0", {"user_1", "user_2"})],
    ids=["all", "glob", "older-than"],
)
def test_clear_cache_in_another_process_is_never_missed(
    memcached_pool: list[MemcachedServer],
    make_client: Callable[..., Any],
    sim: Any,
    pattern: str,
    older_than: str,
    cleared: set[str],
) -> None:
    url = pool_url(memcached_pool)
    ns = f"clear-{uuid.uuid4().hex[:8]}"
    client = make_client(tiers=[url], namespace=ns, default_ttl=600)
    asked = [(user, f"question {i}") for user in ("user_1", "user_2") for i in range(8)]
    for user, question in asked:
        assert not ask(client, question, cache_key=user).cache_hit
    assert all(ask(client, question, cache_key=user).cache_hit for user, question in asked)

    subprocess.run(
        [sys.executable, "-c", CLEAR_IN_A_SUBPROCESS, url, sim.base_url, ns, pattern, older_than],
        check=True,
        timeout=60,
    )
    for user, question in asked:
        assert ask(client, question, cache_key=user).cache_hit is (user not in cleared)


async def test_async_cached_client_hits_memcached(
    memcached_server: MemcachedServer, async_openai_client: Any, sim: Any
) -> None:
    from llmcache import CachedClient

    ns = f"async-{uuid.uuid4().hex[:8]}"
    client = CachedClient(async_openai_client, tiers=[memcached_server.url], namespace=ns)
    try:
        question = [{"role": "user", "content": "hello?"}]
        first = await client.chat.completions.create(model="gpt-4o-mini", messages=question)
        second = await client.chat.completions.create(model="gpt-4o-mini", messages=question)
        assert (first.cache_hit, second.cache_hit) == (False, True)
        assert second.cache_tier == "L1:memcached"
        assert second.choices[0].message.content == first.choices[0].message.content
        await client.clear_cache()
        third = await client.chat.completions.create(model="gpt-4o-mini", messages=question)
        assert not third.cache_hit
    finally:
        await client.close()
        await async_openai_client.close()


def test_lean_multi_get_reads_split_replies_and_reports_errors(
    single: MemcachedBackend, memcached_server: MemcachedServer
) -> None:
    big = os.urandom(300_000)  # arrives over many recv() calls
    keys = [key() for _ in range(5)]
    client = raw(memcached_server)
    for i, k in enumerate(keys):
        client.set(k, big if i % 2 else b"small %d" % i)
    server = single.pool.servers[0]
    found = server.call("fetch", get_command([*keys, "absent"]))
    assert found == {k.encode(): big if i % 2 else b"small %d" % i for i, k in enumerate(keys)}
    with pytest.raises(MemcacheError):
        server.call("fetch", get_command(["x" * 300]))  # memcached refuses it: CLIENT_ERROR
    assert server.call("fetch", get_command(keys[:1])) == {keys[0].encode(): b"small 0"}
