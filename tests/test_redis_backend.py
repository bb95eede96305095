"""The Redis tier against real redis-server processes: one server and a 3-master cluster.

The conformance suite runs on both, sync and asyncio. The rest shows what the issue asks
beyond it: URLs and lazy connection, one round trip per multi-key call (counted on the
servers), clear by SCAN + UNLINK and by age from the index, locks, fail-open when the
server dies, and entries shared between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import redis
from openai import AsyncOpenAI, OpenAI

from llmcache import CachedClient, ConfigError, MissingExtraError
from llmcache.backends.base import AsyncCacheBackend, CacheBackend
from llmcache.backends.globs import escape
from llmcache.testing import AsyncBackendSuite, BackendSuite
from llmcache.tools.simulator import Simulator
from llmcache_redis import (
    AsyncRedisBackend,
    AsyncRedisClusterBackend,
    RedisBackend,
    RedisClusterBackend,
)
from llmcache_redis.clearing import PRUNE_GRACE
from llmcache_redis.layout import index_of
from llmcache_redis.plugin import async_from_url, from_url
from tests.redis_fixtures import (
    RedisCluster,
    RedisServer,
    kill_and_restart,
    private_redis_server,
    redis_cluster,
    redis_server,
    redis_tls_server,
)
from tests.servers import free_port

# fixtures, used by name
__all__ = ["private_redis_server", "redis_cluster", "redis_server", "redis_tls_server"]

MODEL = "gpt-4o-mini"
CONNECT_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)


def pkey(namespace: str = "t") -> str:
    """A fresh physical key."""
    return f"llmcache:{namespace}:{uuid.uuid4().hex}"


def fresh_namespace() -> str:
    return "ns" + uuid.uuid4().hex[:10]


# -- conformance ---------------------------------------------------------------------------


class TestRedisBackend(BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url + "/1"  # clear() empties the llmcache keys of its db

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestAsyncRedisBackend(AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url + "/2"

    async def make_async_backend(self) -> AsyncCacheBackend:
        return async_from_url(self.url)


class TestRedisUnixSocketBackend(BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_server: RedisServer) -> None:
        self.url = f"unix://{redis_server.unix_socket}?db=3"

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestRedisTLSBackend(BackendSuite):
    """``rediss://`` checking the server's certificate against a CA file."""

    @pytest.fixture(autouse=True)
    def _url(self, redis_tls_server: RedisServer) -> None:
        ca = redis_tls_server.workdir / "cert.pem"
        self.url = f"rediss://127.0.0.1:{redis_tls_server.tls_port}/1?ssl_ca_certs={ca}"

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestRedisClusterBackend(BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_cluster: RedisCluster) -> None:
        self.url = redis_cluster.url

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestAsyncRedisClusterBackend(AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_cluster: RedisCluster) -> None:
        self.url = redis_cluster.url

    async def make_async_backend(self) -> AsyncCacheBackend:
        return async_from_url(self.url)


# -- helpers: what the servers saw -----------------------------------------------------------

_BOOKKEEPING = ("info", "config|resetstat", "cluster|", "command", "client|", "hello", "ping")


class ServerStats:
    """Commands the servers processed, from ``INFO commandstats`` (the servers' own count)."""

    def __init__(self, ports: list[int]) -> None:
        self.admins = [redis.Redis(port=port) for port in ports]

    def reset(self) -> None:
        for admin in self.admins:
            admin.config_resetstat()

    def calls(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for admin in self.admins:
            for name, stat in admin.info("commandstats").items():
                command = name.removeprefix("cmdstat_")
                if not command.startswith(_BOOKKEEPING):
                    counts[command] += int(stat["calls"])
        return counts

    def close(self) -> None:
        for admin in self.admins:
            admin.close()


class Writes:
    """Count the requests written to the sockets (one write, one round trip): each
    ``send_packed_command`` of a sync connection, each write to an asyncio stream (which
    redis-py's async connections and the backend's own reads both go through)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        import redis.connection as conn

        for cls, name in (
            (conn.AbstractConnection, "send_packed_command"),
            (asyncio.StreamWriter, "write"),
            (asyncio.StreamWriter, "writelines"),
        ):
            original = getattr(cls, name)

            def counting(self_: Any, *args: Any, _original: Any = original, **kw: Any) -> Any:
                self.count += 1
                return _original(self_, *args, **kw)

            monkeypatch.setattr(cls, name, counting)


@pytest.fixture(params=["redis", "redis-cluster"])
def store(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_cluster: RedisCluster
) -> Iterator[tuple[CacheBackend, ServerStats]]:
    """A sync backend on the server (db 4) or on the cluster, with its servers' statistics."""
    if request.param == "redis":
        backend, ports = from_url(redis_server.url + "/4"), [redis_server.port]
    else:
        backend, ports = from_url(redis_cluster.url), [n.port for n in redis_cluster.nodes]
    stats = ServerStats(ports)
    # connect to every master (and read the cluster's topology) before anything is counted
    backend.get_many([f"warm-up-{i}" for i in range(64)])
    try:
        yield backend, stats
    finally:
        backend.close()
        stats.close()


# -- URLs, registration, lazy connection ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://:hunter2@localhost:port/0", "port 'port'"),
        ("redis://:hunter2@localhost:70000", "port '70000'"),
        ("redis://:hunter2@localhost/zero", "database 'zero'"),
        ("redis://:hunter2@", "missing host"),
        ("redis://:hunter2@a:1,b:2", "several hosts need redis\\+cluster://"),
        ("redis+cluster://:hunter2@a:1,b:2/3", "only database 0"),
        ("redis+cluster://:hunter2@a:1,,b:2", "missing host"),
        ("redis+cluster://:hunter2@::1:7000", "IPv6"),
        ("unix://:hunter2@", "missing socket path"),
        ("redis://:hunter2@localhost?pool_size=0", "pool_size='0'"),
        ("redis://:hunter2@localhost?batch_size=many", "batch_size='many'"),
        ("rediss://:hunter2@localhost?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe'"),
        ("redis://:hunter2@localhost?pool=3", "unknown option 'pool'.*known: pool_size"),
        ("redis://:hunter2@localhost?ssl_ca_certs=/ca.pem", "unknown option 'ssl_ca_certs'"),
        ("memcached://:hunter2@localhost", "scheme must be one of"),
        ("redis+sentinel://:hunter2@a:26379,b", "missing service name"),
        ("redis+sentinel://:hunter2@a/mymaster/x", "database 'x'"),
        ("redis+sentinel://:hunter2@a/mymaster/0/1", "/service\\[/db\\]"),
        ("redis+sentinel://:hunter2@/mymaster", "missing sentinel host"),
    ],
    ids=[
        "bad-port",
        "port-out-of-range",
        "bad-db",
        "no-host",
        "hosts-without-cluster",
        "cluster-db",
        "empty-cluster-node",
        "bare-ipv6",
        "no-socket-path",
        "zero-pool",
        "bad-batch",
        "bad-cert-reqs",
        "unknown-option",
        "tls-option-without-tls",
        "wrong-scheme",
        "sentinel-no-service",
        "sentinel-bad-db",
        "sentinel-long-path",
        "sentinel-no-host",
    ],
)
def test_malformed_url_is_a_config_error_naming_it_without_its_password(
    url: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        from_url(url)
    assert "hunter2" not in str(caught.value)
    assert ":***@" in str(caught.value)


@pytest.mark.parametrize("password", ["hunter2", "hun%40ter2", "hun@ter2", "hun:ter2", "h/u@n"])
def test_an_awkward_password_is_read_whole_and_never_shown(password: str) -> None:
    from urllib.parse import unquote

    with pytest.raises(ConfigError) as caught:
        from_url(f"redis://user:{password}@127.0.0.1:6390/0?bogus=1")
    for piece in {password, unquote(password), *password.replace("@", ":").split(":")}:
        if len(piece) > 2:
            assert piece not in str(caught.value)
    backend = from_url(f"redis+cluster://user:{password}@a:7000,b:7001")
    assert backend.url.connection["password"] == unquote(password)  # type: ignore[attr-defined]
    assert backend.url.nodes == (("a", 7000), ("b", 7001))  # type: ignore[attr-defined]
    assert "hun" not in repr(backend)


def test_factory_rejects_options_it_does_not_know() -> None:
    with pytest.raises(ConfigError, match="unknown option 'max_entries'"):
        from_url("redis://localhost", max_entries=3)
    with pytest.raises(ConfigError, match="timeout must be a positive number"):
        from_url("redis://localhost", timeout=0)


def test_every_redis_scheme_is_registered_through_the_entry_point() -> None:
    (ep,) = [ep for ep in entry_points(group="llmcache") if ep.name == "redis"]
    registered: dict[str, tuple[Any, Any]] = {}
    ep.load().llmcache_register_backends(
        lambda scheme, factory, async_factory=None: registered.update(
            {scheme: (factory, async_factory)}
        )
    )
    assert sorted(registered) == [
        "redis",
        "redis+cluster",
        "redis+sentinel",
        "rediss",
        "rediss+cluster",
        "unix",
    ]
    assert all(f is from_url and af is async_from_url for f, af in registered.values())


def test_without_redis_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis now raises ImportError
    with pytest.raises(MissingExtraError, match=r"llmcache\[redis\]") as caught:
        from_url("redis+cluster://localhost:7000")
    assert isinstance(caught.value, ImportError)
    with pytest.raises(MissingExtraError, match="unix:// tiers"):
        async_from_url("unix:///run/redis.sock")


def test_without_redis_py_the_plugin_still_loads() -> None:
    script = "import sys; sys.modules['redis'] = None; import llmcache_redis.plugin, llmcache"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_the_password_never_shows_in_reprs() -> None:
    for backend in (
        from_url("redis://user:hunter2@localhost:6379/0"),
        async_from_url("rediss+cluster://user:hunter2@a:7000,b:7001"),
    ):
        assert "hunter2" not in repr(backend)
        assert "user:***@" in repr(backend)


def test_construction_never_connects() -> None:
    dead = free_port()  # nothing listens there
    backends = [
        from_url(f"redis://127.0.0.1:{dead}/0"),
        from_url(f"redis+cluster://127.0.0.1:{dead},127.0.0.1:{free_port()}"),
    ]
    assert [type(b) for b in backends] == [RedisBackend, RedisClusterBackend]
    for backend in backends:
        with pytest.raises(CONNECT_ERRORS):  # the first call is the first connection
            backend.get("k")
        backend.close()


async def test_async_construction_never_connects() -> None:
    dead = free_port()
    backends = [
        async_from_url(f"redis://127.0.0.1:{dead}/0"),
        async_from_url(f"redis+cluster://127.0.0.1:{dead}"),
    ]
    assert [type(b) for b in backends] == [AsyncRedisBackend, AsyncRedisClusterBackend]
    for backend in backends:
        with pytest.raises(CONNECT_ERRORS):
            await backend.get("k")
        await backend.close()


async def test_tls_verifies_the_server_unless_told_not_to(redis_tls_server: RedisServer) -> None:
    url = f"rediss://127.0.0.1:{redis_tls_server.tls_port}/2"
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        from_url(url).get("k")  # a self-signed certificate, and no CA given
    unchecked = async_from_url(url + "?ssl_cert_reqs=none")
    key = pkey()
    await unchecked.set(key, b"v", 60)
    assert await unchecked.get(key) == b"v"
    await unchecked.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def test_a_hung_server_costs_about_one_timeout_per_call(silent_port: int) -> None:
    backend = from_url(f"redis://127.0.0.1:{silent_port}/0", timeout=0.3)
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            backend.get("k")
        assert time.monotonic() - started < 0.9  # no retries, no backoff
    backend.close()


async def test_a_hung_server_costs_about_one_timeout_per_async_call(silent_port: int) -> None:
    backend = async_from_url(f"redis://127.0.0.1:{silent_port}/0", timeout=0.3)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        await backend.get("k")
    assert time.monotonic() - started < 0.9
    await backend.close()


def test_pool_size_caps_the_connections_to_a_server(redis_server: RedisServer) -> None:
    name = "llmcache-pool-" + uuid.uuid4().hex[:6]
    backend = from_url(f"{redis_server.url}/4?pool_size=2&client_name={name}")
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(50):
                backend.get_many([pkey() for _ in range(5)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    admin = redis.Redis(port=redis_server.port)
    mine = [c for c in admin.client_list() if c["name"] == name]
    admin.close()
    backend.close()
    assert errors == []
    assert 1 <= len(mine) <= 2


async def test_a_burst_beyond_the_async_pool_waits_for_a_connection(
    redis_server: RedisServer,
) -> None:
    name = "llmcache-apool-" + uuid.uuid4().hex[:6]
    backend = async_from_url(f"{redis_server.url}/4?pool_size=2&client_name={name}")
    key = pkey()
    await backend.set(key, b"v", 60)
    values = await asyncio.gather(*(backend.get(key) for _ in range(40)))
    assert values == [b"v"] * 40  # no "too many connections": the 38 others waited their turn
    admin = redis.Redis(port=redis_server.port)
    assert 1 <= len([c for c in admin.client_list() if c["name"] == name]) <= 2
    admin.close()
    await backend.close()


# -- one round trip --------------------------------------------------------------------------


def test_a_hit_is_one_get(store: tuple[CacheBackend, ServerStats]) -> None:
    backend, stats = store
    key = pkey()
    backend.set(key, b"v", 60)
    stats.reset()
    assert backend.get(key) == b"v"
    assert stats.calls() == Counter({"get": 1})


def test_get_many_of_100_keys_is_one_round_trip(
    store: tuple[CacheBackend, ServerStats], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, stats = store
    keys = [pkey() for _ in range(100)]
    backend.set_many(dict.fromkeys(keys[::2], b"v"), 60)
    stats.reset()
    writes = Writes(monkeypatch)
    values = backend.get_many(keys)
    sent = writes.count
    monkeypatch.undo()
    assert values == [b"v", None] * 50
    calls = stats.calls()
    assert set(calls) == {"mget"}  # nothing but MGETs reached the servers
    if isinstance(backend, RedisClusterBackend):
        # one MGET per hash slot, every master's share sent in one write before any read
        assert calls["mget"] == len({redis.crc.key_slot(k.encode()) for k in keys})
        assert sent == len(stats.admins)
    else:
        assert calls["mget"] == 1
        assert sent == 1


async def test_async_get_many_and_set_many_are_one_round_trip(
    redis_server: RedisServer, redis_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url, masters in ((redis_server.url + "/4", 1), (redis_cluster.url, 3)):
        backend = async_from_url(url)
        keys = [pkey() for _ in range(100)]
        await backend.set_many(dict.fromkeys(keys, b"v"), 60)
        await backend.get_many(keys)  # connections to every master are open from now on
        writes = Writes(monkeypatch)
        assert await backend.get_many(keys) == [b"v"] * 100
        assert writes.count == masters
        writes.count = 0
        await backend.set_many({pkey(): b"w" for _ in range(100)}, 60)
        assert writes.count == masters
        monkeypatch.undo()
        await backend.close()


def test_set_many_writes_values_and_index_in_one_round_trip(
    store: tuple[CacheBackend, ServerStats], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, stats = store
    keys = [pkey("rt") for _ in range(100)]
    stats.reset()
    writes = Writes(monkeypatch)
    backend.set_many(dict.fromkeys(keys, b"v"), 60)
    sent = writes.count
    monkeypatch.undo()
    calls = stats.calls()
    assert calls["set"] == 100
    assert calls["zadd"] == 2  # the namespace's creation and expiry sets
    assert sent == len(stats.admins)


# -- reads on one server: requests the backend packs itself ---------------------------------

AWKWARD_KEYS = [
    "llmcache:t:caf\u00e9 \u2615",  # UTF-8, as redis-py encodes keys
    "llmcache:t:two words",
    "llmcache:t:line\r\nbreak",  # protocol characters inside a key are only bytes
    "llmcache:t:" + "x" * 5000,
    "llmcache:t:",
]


def test_awkward_keys_read_back_what_redis_py_wrote(redis_server: RedisServer) -> None:
    backend = from_url(redis_server.url + "/4")
    values = {key: f"v{i}".encode() for i, key in enumerate(AWKWARD_KEYS)}
    backend.set_many(values, 60)  # written through redis-py's own command packing
    for key, value in values.items():
        assert backend.get(key) == value
    assert backend.get_many([*values, pkey()]) == [*values.values(), None]
    backend.close()


async def test_async_awkward_keys_read_back_what_redis_py_wrote(redis_server: RedisServer) -> None:
    backend = async_from_url(redis_server.url + "/4")
    values = {key: f"a{i}".encode() for i, key in enumerate(AWKWARD_KEYS)}
    await backend.set_many(values, 60)
    for key, value in values.items():
        assert await backend.get(key) == value
    assert await backend.get_many([*values, pkey()]) == [*values.values(), None]
    await backend.close()


async def test_async_get_many_of_a_large_request_waits_for_the_socket(
    redis_server: RedisServer,
) -> None:
    backend = async_from_url(redis_server.url + "/4")
    keys = [pkey() + "-" + "k" * 200 for _ in range(2000)]  # about 500 KB of MGET
    await backend.set_many(dict.fromkeys(keys[::3], b"v"), 60)
    expected = [b"v" if i % 3 == 0 else None for i in range(len(keys))]
    assert await backend.get_many(keys) == expected
    assert await backend.get(keys[0]) == b"v"  # the connection is in step afterwards
    await backend.close()


async def test_a_cancelled_async_read_never_leaves_its_reply_for_the_next_one(
    redis_server: RedisServer,
) -> None:
    backend = async_from_url(redis_server.url + "/4?pool_size=1")
    values = {pkey(): uuid.uuid4().bytes for _ in range(20)}
    await backend.set_many(values, 60)
    keys = list(values)
    cancelled = 0
    for i in range(300):
        key = keys[i % len(keys)]
        task = asyncio.ensure_future(backend.get(key))
        for _ in range(i % 4):  # cancel it before, while or after it is sent
            await asyncio.sleep(0)
        cancelled += task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            assert await task == values[key]
        other = keys[(i + 7) % len(keys)]
        assert await backend.get(other) == values[other]
    assert cancelled > 0
    await backend.close()


def test_a_read_of_a_key_of_another_type_raises_and_the_connection_stays_usable(
    redis_server: RedisServer,
) -> None:
    backend = from_url(redis_server.url + "/4?pool_size=1")
    admin = redis.Redis(port=redis_server.port, db=4)
    listed, key = pkey(), pkey()
    admin.rpush(listed, "x")
    backend.set(key, b"v", 60)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        backend.get(listed)
    assert backend.get(key) == b"v"
    admin.delete(listed)
    admin.close()
    backend.close()


def test_a_sync_call_waits_at_most_the_timeout_for_a_free_connection(
    redis_server: RedisServer,
) -> None:
    backend = from_url(redis_server.url + "/4?pool_size=1", timeout=0.3)
    key = pkey()
    backend.set(key, b"v", 60)
    pool = backend.client.connection_pool
    held = pool.get_connection()  # the pool's only connection, busy elsewhere
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="No connection available"):
        backend.get(key)
    assert 0.25 < time.monotonic() - started < 0.9
    threading.Timer(0.1, pool.release, (held,)).start()
    assert backend.get(key) == b"v"  # waited for the connection to come back
    backend.close()


def test_ttl_is_set_in_milliseconds_and_forever_has_none(
    store: tuple[CacheBackend, ServerStats],
) -> None:
    backend, _ = store
    raw: Any = backend.client  # type: ignore[attr-defined]
    key = pkey()
    backend.set(key, b"v", 1.25)
    assert 1150 <= raw.pttl(key) <= 1250
    backend.set(key, b"v", None)  # forever replaces the TTL, not keeps it
    assert raw.pttl(key) == -1
    backend.set(key, b"v", 0.15)
    time.sleep(0.25)
    assert backend.get(key) is None


# -- clear -----------------------------------------------------------------------------------


def _small_batch_targets(
    redis_server: RedisServer, redis_cluster: RedisCluster
) -> list[tuple[str, list[int]]]:
    """One server and the cluster, clearing 100 keys per batch, with the ports to watch."""
    return [
        (redis_server.url + "/4?batch_size=100", [redis_server.port]),
        (redis_cluster.url + "?batch_size=100", [n.port for n in redis_cluster.nodes]),
    ]


def test_clear_scans_and_unlinks_in_batches_never_keys_or_flushdb(
    redis_server: RedisServer, redis_cluster: RedisCluster
) -> None:
    for url, ports in _small_batch_targets(redis_server, redis_cluster):
        backend, stats = from_url(url), ServerStats(ports)
        ns = fresh_namespace()
        backend.set_many({pkey(ns): b"v" for _ in range(1050)}, 600)
        backend.set_many({pkey(): b"v" for _ in range(10)}, 600)  # another namespace
        stats.reset()
        assert backend.clear(f"llmcache:{ns}:*") == 1050
        calls = stats.calls()
        assert calls["scan"] >= 10 * len(ports) or calls["scan"] >= 11
        assert calls["unlink"] >= 11
        assert not {"keys", "flushdb", "flushall", "del", "get", "mget"} & set(calls)
        assert backend.clear(f"llmcache:{ns}:*") == 0
        backend.close()
        stats.close()


def test_clearing_a_whole_namespace_unlinks_its_index_once(
    redis_server: RedisServer, redis_cluster: RedisCluster
) -> None:
    for url, ports in _small_batch_targets(redis_server, redis_cluster):
        backend, stats = from_url(url), ServerStats(ports)
        raw: Any = backend.client  # type: ignore[attr-defined]
        ns, other = fresh_namespace(), fresh_namespace()
        index = index_of(ns)
        old = time.time() - 3600
        backend.set_many({pkey(ns): b"v" for _ in range(350)}, 600, created=old)
        backend.set(pkey(other), b"v", 600, created=old)
        stats.reset()
        assert backend.clear(f"llmcache:{ns}:*") == 350
        calls = stats.calls()
        assert "zrem" not in calls  # the batches left the index alone: it went at once
        assert raw.exists(index.created, index.expires) == 0
        assert backend.clear(f"llmcache:{other}:*", older_than=60) == 1  # theirs is intact
        backend.set(pkey(ns), b"v", 600, created=old)  # a later store is indexed afresh
        assert backend.clear(f"llmcache:{ns}:*", older_than=60) == 1
        backend.close()
        stats.close()


def test_glob_characters_in_a_cache_key_cannot_widen_a_clear(
    store: tuple[CacheBackend, ServerStats],
) -> None:
    backend, _ = store
    ns = fresh_namespace()
    scopes = ["[ab]", "a", "b", "*", "x", "a?", "ab", "^a", "a\\b", "a]"]
    keys = {scope: f"llmcache:{ns}:{scope}:digest" for scope in scopes}
    for scope in scopes:  # what the core sends for clear_cache(key=escape(scope) + ":*")
        backend.set_many({k: b"v" for k in keys.values()}, 60)
        assert backend.clear(f"llmcache:{ns}:{escape(scope)}:*") == 1
        assert backend.get(keys[scope]) is None
        assert all(backend.get(k) == b"v" for s, k in keys.items() if s != scope)


def test_clear_stays_inside_its_namespace(store: tuple[CacheBackend, ServerStats]) -> None:
    backend, _ = store
    mine, theirs = fresh_namespace(), fresh_namespace()
    old = time.time() - 3600
    backend.set_many({pkey(mine): b"1", pkey(theirs): b"2"}, 600, created=old)
    theirs_prefix = f"llmcache:{theirs}:"
    assert backend.clear(f"llmcache:{mine}:*", older_than=60) == 1
    assert backend.clear(f"llmcache:{mine}:*") == 0
    assert backend.clear(theirs_prefix + "*", older_than=60) == 1  # its index is intact


def test_clear_by_age_reads_only_the_index(store: tuple[CacheBackend, ServerStats]) -> None:
    backend, stats = store
    ns = fresh_namespace()
    now = time.time()
    backend.set_many({pkey(ns): b"old" for _ in range(300)}, 600, created=now - 7200)
    backend.set_many({pkey(ns): b"new" for _ in range(200)}, 600, created=now - 10)
    backend.set_many({f"llmcache:{ns}:a:{i}": b"old" for i in range(50)}, 600, created=now - 7200)
    stats.reset()
    assert backend.clear(f"llmcache:{ns}:a:*", older_than=3600) == 50  # glob and age
    assert backend.clear(f"llmcache:{ns}:*", older_than=3600) == 300  # age, whole namespace
    calls = stats.calls()
    assert calls["zscan"] >= 1  # the glob filters the index on the server
    assert calls["zrangebyscore"] >= 1  # the whole namespace reads its oldest members
    # no value was read, no key space was scanned
    assert not {"get", "mget", "getex", "dump", "strlen", "scan", "keys"} & set(calls)
    assert backend.get_many([f"llmcache:{ns}:a:0", pkey(ns)]) == [None, None]


def test_index_members_are_pruned_as_entries_expire(
    store: tuple[CacheBackend, ServerStats],
) -> None:
    backend, _ = store
    raw: Any = backend.client  # type: ignore[attr-defined]
    ns = fresh_namespace()
    index = index_of(ns)
    backend.set_many({pkey(ns): b"v" for _ in range(150)}, 0.1)
    backend.set(pkey(ns), b"forever", None)
    assert raw.zcard(index.created) == 151
    time.sleep(0.1 + PRUNE_GRACE + 0.2)
    backend.set(pkey(ns), b"v", 60)  # every write prunes what expired, at most 102 here
    assert raw.zcard(index.created) == 151 - 102 + 1
    backend.set(pkey(ns), b"v", 60)
    assert raw.zcard(index.created) == 3
    assert raw.zcard(index.expires) == 2


def test_clear_counts_only_entries_that_still_existed(
    store: tuple[CacheBackend, ServerStats],
) -> None:
    backend, _ = store
    ns = fresh_namespace()
    old = time.time() - 3600
    backend.set_many({pkey(ns): b"v" for _ in range(5)}, 0.1, created=old)
    backend.set_many({pkey(ns): b"v" for _ in range(3)}, 600, created=old)
    time.sleep(0.2)  # expired, and not pruned yet: still in the index
    assert backend.clear(f"llmcache:{ns}:*", older_than=60) == 3


def test_clear_of_everything_leaves_other_keys_alone(redis_server: RedisServer) -> None:
    backend = from_url(redis_server.url + "/6")
    raw: Any = backend.client  # type: ignore[attr-defined]
    raw.set("app:session:1", b"keep")
    raw.set("llmcachex", b"keep")
    backend.set_many({pkey("a"): b"1", pkey("b"): b"2", "tool:key": b"3"}, 60)
    assert backend.clear() == 3
    assert sorted(raw.scan_iter()) == [b"app:session:1", b"llmcachex"]
    backend.close()


def test_scan_reports_size_age_and_expiry(store: tuple[CacheBackend, ServerStats]) -> None:
    backend, _ = store
    ns = fresh_namespace()
    now = time.time()
    backend.set(f"llmcache:{ns}:a", b"12345", 100, created=now - 50)
    backend.set(f"llmcache:{ns}:b", b"12", None)
    found = {e.key: e for e in backend.scan(f"llmcache:{ns}:*")}
    assert sorted(found) == [f"llmcache:{ns}:a", f"llmcache:{ns}:b"]
    a, b = found[f"llmcache:{ns}:a"], found[f"llmcache:{ns}:b"]
    assert (a.size, b.size) == (5, 2)
    assert a.created == pytest.approx(now - 50, abs=0.01)
    assert a.expires == pytest.approx(now + 100, abs=1)
    assert b.expires is None
    assert b.created == pytest.approx(now, abs=5)


# -- locks -----------------------------------------------------------------------------------


def test_a_lock_is_exclusive_until_its_holder_unlocks(
    store: tuple[CacheBackend, ServerStats],
) -> None:
    backend, _ = store
    name = pkey() + ":lock"
    token = backend.try_lock(name, 5)
    assert token is not None
    assert backend.try_lock(name, 5) is None
    backend.unlock(name, "not-the-token")  # someone else's unlock leaves it held
    assert backend.try_lock(name, 5) is None
    backend.unlock(name, token)
    assert backend.try_lock(name, 5) is not None


def test_a_dead_holder_blocks_nobody_past_the_lock_ttl(
    store: tuple[CacheBackend, ServerStats],
) -> None:
    backend, _ = store
    name = pkey() + ":lock"
    stale = backend.try_lock(name, 0.2)  # the holder dies without unlocking
    assert stale is not None
    time.sleep(0.3)
    fresh = backend.try_lock(name, 5)
    assert fresh is not None
    backend.unlock(name, stale)  # the late holder's unlock does not free the new lock
    assert backend.try_lock(name, 5) is None


async def test_async_locks(redis_server: RedisServer, redis_cluster: RedisCluster) -> None:
    for url in (redis_server.url + "/4", redis_cluster.url):
        backend = async_from_url(url)
        assert backend.supports_locks
        name = pkey() + ":lock"
        token = await backend.try_lock(name, 5)
        assert token is not None
        assert await backend.try_lock(name, 5) is None
        await backend.unlock(name, token)
        assert await backend.try_lock(name, 5) is not None
        await backend.close()


def test_an_async_backend_follows_the_event_loop(redis_server: RedisServer) -> None:
    backend = async_from_url(redis_server.url + "/4")
    key = pkey()
    asyncio.run(backend.set(key, b"v", 60))
    assert asyncio.run(backend.get(key)) == b"v"  # a second loop gets a client of its own
    asyncio.run(backend.close())


# -- through CachedClient: fail-open, processes sharing a cache --------------------------------


def ask(client: Any, question: str = "What is a shared cache?") -> Any:
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question}]
    )


def test_killing_the_server_fails_no_call_and_caching_resumes_after_restart(
    private_redis_server: RedisServer, sim: Simulator
) -> None:
    client = CachedClient(
        OpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0),
        tiers=[private_redis_server.url + "/0"],
        namespace=fresh_namespace(),
        backend_timeout=0.3,
        recovery_time=0.3,
    )
    assert not ask(client).cache_hit
    assert ask(client).cache_tier == "L1:redis"

    failures: list[BaseException] = []
    served: list[bool] = []
    done = threading.Event()

    def traffic() -> None:
        for i in range(500_000):  # bounded; stops as soon as the test says so (~3 s)
            if done.is_set():
                return
            try:
                served.append(ask(client, f"question {i % 7}").cache_hit)
            except BaseException as exc:
                failures.append(exc)

    worker = threading.Thread(target=traffic)
    worker.start()
    time.sleep(0.5)
    kill_and_restart(private_redis_server, down_for=1.5)  # mid-run, under traffic
    time.sleep(1.0)
    done.set()
    worker.join(timeout=60)

    assert failures == []
    assert len(served) > 20
    assert client.stats().errors >= 1
    time.sleep(0.4)  # the breaker lets the tier be tried again
    fresh = f"after the restart {uuid.uuid4().hex}"
    assert not ask(client, fresh).cache_hit
    again = ask(client, fresh)
    assert again.cache_hit
    assert again.cache_tier == "L1:redis"
    client.close()


async def test_an_async_client_fails_open_and_resumes_too(
    private_redis_server: RedisServer, sim: Simulator
) -> None:
    client = CachedClient(
        AsyncOpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0),
        tiers=[private_redis_server.url + "/0"],
        namespace=fresh_namespace(),
        backend_timeout=0.3,
        recovery_time=0.3,
    )
    assert not (await ask(client)).cache_hit
    assert (await ask(client)).cache_hit
    private_redis_server.stop()
    for _ in range(5):
        assert not (await ask(client)).cache_hit  # served by the upstream, no error raised
    assert client.stats().errors >= 1
    private_redis_server.start()
    await asyncio.sleep(0.4)
    await ask(client)
    assert (await ask(client)).cache_tier == "L1:redis"
    await client.close()


WORKER = """
import json, sys, time
from openai import OpenAI
from llmcache import CachedClient

base_url, tier, namespace, action, lock_ttl = sys.argv[1:6]
client = CachedClient(
    OpenAI(api_key="sk-test", base_url=base_url, max_retries=0),
    tiers=[tier], namespace=namespace, lock_ttl=float(lock_ttl),
)
print("ready", flush=True)
sys.stdin.readline()  # wait for the go, so that several workers start together
started = time.monotonic()
if action == "ask":
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is a shared cache?"}]
    )
    out = {"hit": resp.cache_hit, "tier": resp.cache_tier,
           "content": resp.choices[0].message.content}
else:
    out = {"removed": client.clear_cache()}
out["elapsed"] = time.monotonic() - started
print(json.dumps(out), flush=True)
client.close()
"""


class Workers:
    """Python processes, each with a CachedClient of its own on the same tier."""

    def __init__(self, tmp_path: Path, sim: Simulator, tier: str, namespace: str) -> None:
        self.script = tmp_path / "worker.py"
        self.script.write_text(WORKER)
        self.args = [sim.base_url, tier, namespace]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCACHE_")}

    def start(self, action: str = "ask", lock_ttl: float = 10.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(self.script), *self.args, action, str(lock_ttl)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        return proc

    @staticmethod
    def go(*procs: subprocess.Popen[str]) -> None:
        """Wait until every worker has built its client, then let them all ask at once."""
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    @staticmethod
    def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def run(self, action: str = "ask", lock_ttl: float = 10.0) -> dict[str, Any]:
        proc = self.start(action, lock_ttl)
        self.go(proc)
        return self.result(proc)


@pytest.fixture(params=["redis", "redis-cluster"])
def shared_tier(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_cluster: RedisCluster
) -> str:
    return redis_server.url + "/7" if request.param == "redis" else redis_cluster.url


def test_two_processes_share_entries_and_see_each_others_clears(
    tmp_path: Path, sim: Simulator, shared_tier: str
) -> None:
    workers = Workers(tmp_path, sim, shared_tier, fresh_namespace())
    first = workers.run()
    second = workers.run()
    assert first["hit"] is False
    assert second["hit"] is True
    assert second["tier"] == "L1:redis-cluster" if "cluster" in shared_tier else "L1:redis"
    assert second["content"] == first["content"]
    assert sim.count() == 1
    assert workers.run("clear")["removed"] == 1
    assert workers.run()["hit"] is False  # the other process sees the clear
    assert sim.count() == 2


def test_processes_issuing_the_same_miss_call_the_upstream_once(
    tmp_path: Path, sim: Simulator, shared_tier: str
) -> None:
    workers = Workers(tmp_path, sim, shared_tier, fresh_namespace())
    sim.delay = 1.0  # a slow model: every worker asks while the first call is in flight
    procs = [workers.start() for _ in range(4)]
    workers.go(*procs)
    results = [workers.result(proc) for proc in procs]
    assert sim.count() == 1
    assert sum(not r["hit"] for r in results) == 1
    assert len({r["content"] for r in results}) == 1


def test_a_dead_lock_holder_blocks_nobody_past_the_lock_ttl(
    tmp_path: Path, sim: Simulator, redis_server: RedisServer
) -> None:
    tier = redis_server.url + "/8"
    workers = Workers(tmp_path, sim, tier, fresh_namespace())
    sim.delay = 3.0
    holder = workers.start(lock_ttl=1.0)
    workers.go(holder)
    locks = redis.Redis(port=redis_server.port, db=8)
    deadline = time.monotonic() + 20
    while not list(locks.scan_iter("_llmcache:lock:*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(locks.scan_iter("_llmcache:lock:*")), "the first worker never took the lock"
    holder.kill()  # dies holding the lock
    holder.communicate(timeout=10)
    sim.delay = 0.0
    # every process has the same lock_ttl: a waiter gives up on the dead holder's entry
    # within one lock_ttl and calls the upstream itself
    result = workers.run(lock_ttl=1.0)
    assert result["hit"] is False
    assert result["elapsed"] < 2.5
    locks.close()


# -- a cluster hit after the topology changed ------------------------------------------------


def _stale_slot(client: Any, key: str) -> None:
    """Make the client's topology name another master for ``key``'s slot, as after a
    resharding it has not read yet: the master it asks answers ``MOVED``."""
    from redis.crc import key_slot

    slots = client.nodes_manager.slots_cache
    slot = key_slot(key.encode())
    owner = slots[slot][0]
    other = next(nodes[0] for nodes in slots.values() if nodes[0].name != owner.name)
    slots[slot] = [other]


def test_a_cluster_hit_follows_a_redirection(redis_cluster: RedisCluster) -> None:
    backend = from_url(redis_cluster.url)
    backend.set("llmcache:t:moved", b"v", 60)
    assert backend.get("llmcache:t:moved") == b"v"
    _stale_slot(backend.client, "llmcache:t:moved")
    assert backend.get("llmcache:t:moved") == b"v"  # MOVED: redis-py's path follows it
    assert backend.get("llmcache:t:moved") == b"v"  # and the topology is right again
    backend.close()


def test_an_async_cluster_hit_follows_a_redirection(redis_cluster: RedisCluster) -> None:
    async def scenario() -> None:
        backend = async_from_url(redis_cluster.url)
        assert getattr(backend, "awaits", None) == "bounded-reads"
        await backend.set("llmcache:t:moved", b"v", 60)
        assert await backend.get("llmcache:t:moved") == b"v"
        _stale_slot(backend.client, "llmcache:t:moved")
        assert await backend.get("llmcache:t:moved") == b"v"
        assert await backend.get("llmcache:t:moved") == b"v"
        await backend.close()

    asyncio.run(scenario())
