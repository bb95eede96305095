"""The SQL tier on real databases: a SQLite file, PostgreSQL and MariaDB.

The conformance suite runs on all three, sync and asyncio. The rest shows what the issue
asks beyond it: URLs and options, lazy connection, long keys, LIKE/GLOB escaping, expiry
and the bounded purge, a hit that is one primary-key SELECT, table creation racing between
processes, two processes writing one SQLite file, locks, fail-open, and CachedClient
end to end.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from openai import AsyncOpenAI, OpenAI

from llmcache import CachedClient, ConfigError, MissingExtraError
from llmcache._plugins import get_registry
from llmcache.backends.base import AsyncCacheBackend, CacheBackend, SyncToAsync
from llmcache.backends.globs import escape
from llmcache.testing import AsyncBackendSuite, BackendSuite
from llmcache.tools.simulator import Simulator
from llmcache_sql import AsyncSQLBackend, SQLBackend
from llmcache_sql.plugin import SCHEMES, async_from_url, from_url
from llmcache_sql.schema import KEY_LIMIT, SCHEMA_VERSION
from tests.faultproxy import FaultProxy
from tests.servers import free_port
from tests.sql_fixtures import Database, drop_tables, mariadb_db, postgres_db, table_url

__all__ = ["mariadb_db", "postgres_db"]  # fixtures, used by name

MODEL = "gpt-4o-mini"
DIALECTS = ["sqlite", "postgresql", "mariadb"]


def pkey(namespace: str = "t") -> str:
    """A fresh physical key."""
    return f"llmcache:{namespace}:{uuid.uuid4().hex}"


@pytest.fixture(scope="class")
def pg_table(postgres_db: Database) -> Iterator[str]:
    """A tier URL on PostgreSQL with a table of its own, dropped afterwards."""
    table, url = table_url(postgres_db)
    yield url
    drop_tables(postgres_db.url, table)


@pytest.fixture(scope="class")
def maria_table(mariadb_db: Database) -> Iterator[str]:
    """A tier URL on MariaDB with a table of its own, dropped afterwards."""
    table, url = table_url(mariadb_db)
    yield url
    drop_tables(mariadb_db.url, table)


@pytest.fixture(params=DIALECTS)
def tier_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh tier URL on each dialect (a new file or a new table)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cache.db'}"
        return
    fixture = "postgres_db" if request.param == "postgresql" else "mariadb_db"
    database: Database = request.getfixturevalue(fixture)
    table, url = table_url(database)
    yield url
    drop_tables(database.url, table)


@pytest.fixture
def make_backend(tier_url: str) -> Iterator[Callable[..., SQLBackend]]:
    """Build sync backends on ``tier_url`` (extra query options appended); closed after."""
    made: list[SQLBackend] = []

    def make(query: str = "", **kwargs: Any) -> SQLBackend:
        url = tier_url + (("&" if "?" in tier_url else "?") + query if query else "")
        backend = from_url(url, **kwargs)
        assert isinstance(backend, SQLBackend)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def rows_in(backend: SQLBackend) -> int:
    """Count the rows of a backend's table, expired ones included."""
    with backend.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(backend.schema.entries)
            ).scalar_one()
        )


# -- conformance ---------------------------------------------------------------------------


class TestSQLiteBackend(BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'cache.db'}"

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestAsyncSQLiteBackend(AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'cache.db'}"

    async def make_async_backend(self) -> AsyncCacheBackend:
        backend = async_from_url(self.url)
        assert isinstance(backend, AsyncSQLBackend)
        return backend


class TestPostgreSQLBackend(BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, pg_table: str) -> None:
        self.url = pg_table

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestAsyncPostgreSQLBackend(AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, pg_table: str) -> None:
        self.url = pg_table

    async def make_async_backend(self) -> AsyncCacheBackend:
        backend = async_from_url(self.url)
        assert isinstance(backend, AsyncSQLBackend)  # psycopg's asyncio flavour
        return backend


def test_concurrent_async_postgresql_reads_leave_connections_for_writes(pg_table: str) -> None:
    """More readers than are kept idle: each read gets a connection, and writes still do."""

    async def scenario() -> None:
        backend = async_from_url(pg_table + ("&" if "?" in pg_table else "?") + "pool_size=2")
        await backend.set("llmcache:t:k", b"v", 60)
        for _ in range(3):
            reads = [backend.get("llmcache:t:k") for _ in range(12)]
            assert await asyncio.gather(*reads) == [b"v"] * 12
            await backend.set("llmcache:t:k", b"v", 60)
        await backend.close()

    asyncio.run(scenario())


def test_concurrent_postgresql_reads_from_threads_leave_connections_for_writes(
    pg_table: str,
) -> None:
    """More reading threads than readers are kept: each read gets a connection, and
    writes still do."""
    backend = from_url(pg_table + ("&" if "?" in pg_table else "?") + "pool_size=2")
    backend.set("llmcache:t:k", b"v", 60)
    barrier = threading.Barrier(8)

    def reads() -> list[bytes | None]:
        barrier.wait()
        return [backend.get("llmcache:t:k") for _ in range(20)]

    with ThreadPoolExecutor(8) as pool:
        results = [f.result(timeout=60) for f in [pool.submit(reads) for _ in range(8)]]
    assert all(values == [b"v"] * 20 for values in results)
    backend.set("llmcache:t:k", b"w", 60)
    assert backend.get("llmcache:t:k") == b"w"
    backend.close()


class TestMariaDBBackend(BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, maria_table: str) -> None:
        self.url = maria_table

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestAsyncMariaDBBackend(AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, maria_table: str) -> None:
        self.url = maria_table

    async def make_async_backend(self) -> AsyncCacheBackend:
        # aiomysql when it works with the installed PyMySQL, else the sync tier in a thread
        return async_from_url(self.url)


# -- URLs, options, drivers ----------------------------------------------------------------


def test_the_plugin_serves_every_sql_scheme() -> None:
    assert set(SCHEMES) <= set(get_registry().schemes())
    assert get_registry().backend("sqlite").factory is from_url


def test_a_cached_client_labels_sql_tiers_by_family(tmp_path: Path) -> None:
    client = CachedClient(
        OpenAI(api_key="x", base_url="http://127.0.0.1:9"),
        tiers=[
            f"sqlite:///{tmp_path / 'a.db'}",
            "postgresql+psycopg://u@127.0.0.1:9/db",
            "mariadb+pymysql://u@127.0.0.1:9/db",
        ],
    )
    assert [tier.label for tier in client._tiers.tiers] == [
        "L1:sqlite",
        "L2:postgresql",
        "L3:mysql",
    ]
    assert all(tier.shared for tier in client._tiers.tiers)
    client.close()


def test_construction_never_connects(tmp_path: Path) -> None:
    started = time.monotonic()
    backends = [
        from_url(f"sqlite:///{tmp_path / 'never' / 'cache.db'}"),
        from_url(f"postgresql+psycopg://u@127.0.0.1:{free_port()}/db"),
        from_url(f"mysql+pymysql://u@127.0.0.1:{free_port()}/db"),
    ]
    assert time.monotonic() - started < 1.0
    assert not (tmp_path / "never").exists()  # the file (and its directory) come on first use
    for backend in backends:
        backend.close()


def test_bare_schemes_pick_the_installed_driver() -> None:
    pg = from_url("postgresql://u@127.0.0.1/db")
    maria = from_url("mariadb://u@127.0.0.1/db")
    assert isinstance(pg, SQLBackend)
    assert isinstance(maria, SQLBackend)
    assert pg.engine.url.drivername == "postgresql+psycopg"
    assert maria.engine.url.drivername == "mariadb+pymysql"
    assert maria.engine.url.query["charset"] == "utf8mb4"  # added when the URL has none
    heroku = from_url("postgres://u@127.0.0.1/db")  # the spelling some hosts hand out
    assert isinstance(heroku, SQLBackend)
    assert heroku.engine.url.drivername == "postgresql+psycopg"


def test_sync_factory_swaps_an_asyncio_driver_for_a_sync_one(tmp_path: Path) -> None:
    backend = from_url(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    assert isinstance(backend, SQLBackend)
    assert backend.engine.url.drivername == "sqlite+pysqlite"


def test_async_factory_maps_sync_drivers_to_asyncio_ones(tmp_path: Path) -> None:
    sqlite = async_from_url(f"sqlite:///{tmp_path / 'c.db'}")
    pg = async_from_url("postgresql+psycopg2://u@127.0.0.1/db")
    assert isinstance(sqlite, AsyncSQLBackend)
    assert isinstance(pg, AsyncSQLBackend)
    assert sqlite.engine.url.drivername == "sqlite+aiosqlite"
    assert pg.engine.url.drivername == "postgresql+psycopg"
    maria = async_from_url("mysql+pymysql://u@127.0.0.1/db")
    # aiomysql cannot bind bytes with recent PyMySQL: then the sync tier runs in a thread
    assert isinstance(maria, AsyncSQLBackend | SyncToAsync)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///c.db?tabel=x", "unknown option 'tabel'.*llmcache's: table"),
        ("postgresql+psycopg://u@h/db?pool=3", "unknown option 'pool'"),
        ("mysql+pymysql://u@h/db?purge=1", "unknown option 'purge'"),
        ("sqlite:///c.db?table=bad-name", "table='bad-name'"),
        ("sqlite:///c.db?pool_size=0", "pool_size='0'"),
        ("sqlite:///c.db?purge_batch=-1", "purge_batch='-1'"),
        ("sqlite:///c.db?purge_interval=soon", "purge_interval='soon'"),
        ("sqlite://", "needs a file"),
        ("sqlite:///:memory:", "needs a file"),
        ("sqlite://tmp/cache.db", "a SQLite URL has no host"),
        ("oracle://u@h/db", "not a SQLite, PostgreSQL or MySQL/MariaDB URL"),
    ],
    ids=[
        "sqlite-typo",
        "pg-unknown",
        "mysql-unknown",
        "bad-table",
        "zero-pool",
        "negative-purge",
        "bad-interval",
        "sqlite-memory",
        "sqlite-memory-file",
        "sqlite-host",
        "other-dialect",
    ],
)
def test_bad_urls_raise_config_errors_naming_the_option(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_url(url)


def test_driver_query_options_pass_through(mariadb_db: Database, tmp_path: Path) -> None:
    table, url = table_url(mariadb_db)
    backend = from_url(url + "&charset=utf8mb4&connect_timeout=3")
    try:
        backend.set("llmcache:t:ünï", b"v", 60)
        assert backend.get("llmcache:t:ünï") == b"v"
    finally:
        backend.close()
        drop_tables(mariadb_db.url, table)
    sqlite = from_url(f"sqlite:///file:{tmp_path / 'u.db'}?uri=true&cache=private")
    sqlite.set("k", b"v", 60)
    assert sqlite.get("k") == b"v"
    sqlite.close()


def test_unknown_factory_keywords_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown option 'table_name'"):
        from_url("sqlite:///c.db", table_name="x")


def test_without_sqlalchemy_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # import sqlalchemy now fails
    with pytest.raises(MissingExtraError, match=r"llmcache\[sql\]") as caught:
        from_url("sqlite:///c.db")
    assert isinstance(caught.value, ImportError)


@pytest.mark.parametrize(
    ("url", "module", "package"),
    [
        ("postgresql+psycopg://u@h/db", "psycopg", r"llmcache\[postgresql\]"),
        ("mysql+pymysql://u@h/db", "pymysql", r"llmcache\[mysql\]"),
        ("postgresql+psycopg2://u@h/db", "psycopg2", "psycopg2-binary"),
        ("mysql+mysqldb://u@h/db", "MySQLdb", "mysqlclient"),
    ],
    ids=["psycopg", "pymysql", "psycopg2", "mysqldb"],
)
def test_a_missing_driver_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr("llmcache_sql.dialects.installed", lambda name: name != module)
    with pytest.raises(MissingExtraError, match=package):
        from_url(url)


def test_a_driver_llmcache_does_not_know_is_left_to_sqlalchemy() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install 'pg8000'"):
        from_url("postgresql+pg8000://u@h/db")  # not installed here


def test_without_sqlalchemy_the_plugin_still_loads() -> None:
    script = "import sys; sys.modules['sqlalchemy'] = None; import llmcache_sql.plugin, llmcache"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_the_password_never_shows_in_reprs_or_errors() -> None:
    port = free_port()
    backend = from_url(f"postgresql+psycopg://user:hunter2@127.0.0.1:{port}/db", timeout=0.5)
    assert "hunter2" not in repr(backend)
    with pytest.raises(sa.exc.OperationalError) as caught:
        backend.get("k")
    assert "hunter2" not in str(caught.value)
    backend.close()


# -- storage -------------------------------------------------------------------------------


def test_the_schema_version_is_recorded(make_backend: Callable[..., SQLBackend]) -> None:
    backend = make_backend()
    backend.set("k", b"v", 60)
    meta = backend.schema.meta
    with backend.engine.connect() as conn:
        version = conn.execute(
            sa.select(meta.c.value).where(meta.c.name == "schema_version")
        ).scalar_one()
    assert int(version) == SCHEMA_VERSION


def test_a_table_from_a_newer_llmcache_is_refused(make_backend: Callable[..., SQLBackend]) -> None:
    first = make_backend()
    first.set("k", b"v", 60)
    meta = first.schema.meta
    with first.engine.connect() as conn:
        conn.execute(sa.update(meta).values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(ConfigError, match="newer than this llmcache"):
        make_backend().get("k")


def test_long_keys_are_hashed_and_globs_still_match_the_full_key(
    make_backend: Callable[..., SQLBackend],
) -> None:
    backend = make_backend()
    ns = "ns" + uuid.uuid4().hex[:8]
    long_a = f"llmcache:{ns}:" + "é" * 400 + "/tail-a"
    long_b = f"llmcache:{ns}:" + "é" * 400 + "/tail-b"  # same first 512 bytes as long_a
    backend.set_many({long_a: b"a", long_b: b"b"}, 60)
    assert backend.get(long_a) == b"a"
    assert backend.get_many([long_b, long_a]) == [b"b", b"a"]
    with backend.engine.connect() as conn:
        keys = conn.execute(sa.select(backend.schema.entries.c.key)).scalars().all()
    stored = [k.encode() if isinstance(k, str) else k for k in keys]
    if backend.schema.key_limit is not None:
        assert all(len(k) <= KEY_LIMIT for k in stored)
    assert {e.key for e in backend.scan(f"llmcache:{ns}:*")} == {long_a, long_b}
    assert backend.clear(f"llmcache:{ns}:*tail-a") == 1  # matched on the full key
    assert backend.get_many([long_a, long_b]) == [None, b"b"]
    assert backend.clear(escape(long_b)) == 1  # a literal pattern: found by primary key
    assert backend.get(long_b) is None


def test_multi_key_calls_span_several_statements(make_backend: Callable[..., SQLBackend]) -> None:
    backend = make_backend()
    keys = [f"llmcache:m:{i}" + ("x" * 600 if i % 7 == 0 else "") for i in range(700)]
    backend.set_many({k: k[-12:].encode() for k in keys[::2]}, 60)
    wanted = [*keys, *keys[:50]]  # more than two batches of 256, with repeats
    assert backend.get_many(wanted) == [
        k[-12:].encode() if keys.index(k) % 2 == 0 else None for k in wanted
    ]
    backend.delete(keys[:600])
    assert backend.get_many(keys) == [
        k[-12:].encode() if i >= 600 and i % 2 == 0 else None for i, k in enumerate(keys)
    ]


def test_keys_differing_in_case_or_trailing_space_are_distinct(
    make_backend: Callable[..., SQLBackend],
) -> None:
    backend = make_backend()
    keys = [
        "llmcache:t:Key",
        "llmcache:t:key",
        "llmcache:t:key ",
        "llmcache:t:kéy",
        "llmcache:t:KEY",
    ]
    backend.set_many({k: k.encode() for k in keys}, 60)
    assert backend.get_many(keys) == [k.encode() for k in keys]
    assert backend.clear("llmcache:t:key") == 1
    assert backend.clear("llmcache:t:k?y") == 1  # "kéy": é is one character; "Key" is not k
    assert backend.get_many(keys) == [
        b"llmcache:t:Key",
        None,
        b"llmcache:t:key ",
        None,
        b"llmcache:t:KEY",
    ]
    assert backend.clear("llmcache:t:K*") == 2


def test_like_metacharacters_and_the_escape_character_are_literal(
    make_backend: Callable[..., SQLBackend],
) -> None:
    backend = make_backend()
    keys = [
        "llmcache:t:a%b",
        "llmcache:t:axb",
        "llmcache:t:a_b",
        "llmcache:t:a!b",
        "llmcache:t:a\\b",
        "llmcache:t:a[b]",
    ]
    backend.set_many({k: b"1" for k in keys}, 60)
    assert backend.clear(escape("llmcache:t:a%b")) == 1
    assert backend.clear(escape("llmcache:t:a_b")) == 1
    assert backend.clear("llmcache:t:a!*") == 1
    assert backend.clear("llmcache:t:a\\\\*") == 1
    assert backend.clear("llmcache:t:a[b]") == 1
    assert backend.get_many(keys) == [None, b"1", None, None, None, None]


def test_clear_stays_within_the_namespace(make_backend: Callable[..., SQLBackend]) -> None:
    backend = make_backend()
    old = time.time() - 7200
    backend.set_many({"llmcache:a:1": b"1", "llmcache:a:2": b"2"}, 600, created=old)
    backend.set_many({"llmcache:ab:1": b"1", "llmcache:b:1": b"1"}, 600, created=old)
    backend.set("llmcache:a:new", b"n", 600)
    assert backend.clear("llmcache:a:*", older_than=3600) == 2
    assert backend.clear("llmcache:a:*") == 1
    assert backend.get_many(["llmcache:ab:1", "llmcache:b:1"]) == [b"1", b"1"]


def test_expired_rows_are_never_served(make_backend: Callable[..., SQLBackend]) -> None:
    backend = make_backend("purge_batch=0")  # no purge: the rows stay, unread
    backend.set_many({"llmcache:t:a": b"1", "llmcache:t:b": b"2"}, 0.2)
    backend.set("llmcache:t:c", b"3", 0.2)
    time.sleep(0.4)
    assert backend.get("llmcache:t:c") is None
    assert backend.get_many(["llmcache:t:a", "llmcache:t:b", "llmcache:t:c"]) == [None] * 3
    assert list(backend.scan()) == []
    assert rows_in(backend) == 3


def test_purge_removes_expired_rows_in_bounded_batches(
    make_backend: Callable[..., SQLBackend],
) -> None:
    backend = make_backend("purge_batch=10&purge_interval=3600")
    backend.set("llmcache:t:keep", b"k", None)  # the first write purges (nothing yet)
    backend.set_many({f"llmcache:t:{i}": b"x" for i in range(25)}, 0.2)
    time.sleep(0.4)
    assert [backend.purge() for _ in range(4)] == [10, 10, 5, 0]
    assert rows_in(backend) == 1
    assert backend.get("llmcache:t:keep") == b"k"


def test_writes_purge_at_most_once_per_interval(make_backend: Callable[..., SQLBackend]) -> None:
    backend = make_backend("purge_batch=5&purge_interval=3600")
    backend.set_many({f"llmcache:t:{i}": b"x" for i in range(12)}, 0.2)  # purges nothing yet
    time.sleep(0.4)
    backend._next_purge = 0.0  # as if the interval had passed
    backend.set("llmcache:t:w1", b"1", 60)  # one purge: 5 rows
    assert rows_in(backend) == 12 + 1 - 5
    backend.set("llmcache:t:w2", b"2", 60)  # a full batch brings the next purge within 1 s
    assert rows_in(backend) == 12 + 2 - 5
    time.sleep(1.1)
    backend.set("llmcache:t:w3", b"3", 60)
    assert rows_in(backend) == 12 + 3 - 10


def test_a_hit_is_one_primary_key_lookup_and_purge_uses_the_expires_index(
    make_backend: Callable[..., SQLBackend],
) -> None:
    backend = make_backend()
    backend.set("k", b"v", 60)
    statements = backend._statements
    assert statements is not None
    family, table = backend.schema.family, backend.schema.name
    get_args = statements.get.args({"key": "k", "now": 0.0})
    purge_args = statements.purge.args({"now": 0.0})
    explain = "EXPLAIN QUERY PLAN " if family == "sqlite" else "EXPLAIN "
    with backend.engine.connect() as conn:
        if family == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: show the index path
        get_plan = conn.exec_driver_sql(explain + statements.get.sql, get_args).all()
        purge_plan = conn.exec_driver_sql(explain + statements.purge.sql, purge_args).all()
    if family == "sqlite":
        assert "USING INDEX sqlite_autoindex" in str(get_plan)
        assert f"ix_{table}_expires" in str(purge_plan)
    elif family == "postgresql":
        assert f"Index Scan using {table}_pkey" in str(get_plan)
        assert f"ix_{table}_expires" in str(purge_plan)
    else:
        assert [row._mapping["key"] for row in get_plan] == ["PRIMARY"]
        assert [row._mapping["key"] for row in purge_plan] == [f"ix_{table}_expires"]


def test_scan_lists_live_entries_with_their_sizes(make_backend: Callable[..., SQLBackend]) -> None:
    backend = make_backend()
    backend.set_many({f"llmcache:s:{i:04d}": b"x" * i for i in range(1, 1201)}, 600)
    backend.set("llmcache:other:1", b"y", 600)
    entries = list(backend.scan("llmcache:s:*"))
    assert len(entries) == 1200  # more than one page
    assert sum(e.size for e in entries) == sum(range(1, 1201))
    assert all(e.created is not None and e.expires is not None for e in entries)


def test_locks_are_exclusive_token_checked_and_expire(
    make_backend: Callable[..., SQLBackend],
) -> None:
    one, two = make_backend(), make_backend()
    token = one.try_lock("llmcache:t:k:lock", 0.5)
    assert token is not None
    assert two.try_lock("llmcache:t:k:lock", 5) is None
    two.unlock("llmcache:t:k:lock", "not-the-token")
    assert two.try_lock("llmcache:t:k:lock", 5) is None
    one.unlock("llmcache:t:k:lock", token)
    again = two.try_lock("llmcache:t:k:lock", 0.3)
    assert again is not None
    time.sleep(0.5)
    assert one.try_lock("llmcache:t:k:lock", 5) is not None  # the holder's lock expired


def test_async_backend_locks_and_purges(tier_url: str) -> None:
    async def scenario() -> None:
        backend = async_from_url(tier_url + ("&" if "?" in tier_url else "?") + "purge_batch=3")
        try:
            token = await backend.try_lock("n", 5)
            assert token is not None
            assert await backend.try_lock("n", 5) is None
            await backend.unlock("n", token)
            await backend.set_many({f"llmcache:t:{i}": b"x" for i in range(5)}, 0.2)
            await asyncio.sleep(0.4)
            if isinstance(backend, AsyncSQLBackend):
                assert await backend.purge() == 3
            assert await backend.get_many([f"llmcache:t:{i}" for i in range(5)]) == [None] * 5
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_sqlite_files_are_in_wal_mode_and_made_with_their_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "cache.db"
    backend = from_url(f"sqlite:///{path}")
    backend.set("k", b"v", None)
    backend.close()
    with sa.create_engine(f"sqlite:///{path}").connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_each_thread_reads_on_its_own_sqlite_connection(tmp_path: Path) -> None:
    backend = from_url(f"sqlite:///{tmp_path / 'c.db'}")
    backend.set("k", b"v", None)
    seen: list[bytes | None] = []

    def read() -> None:
        seen.extend(backend.get("k") for _ in range(50))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == [b"v"] * 400
    backend.close()
    assert backend.get("k") == b"v"  # usable again after close: it reconnects


def test_a_sqlite_read_leaves_no_snapshot_open(tmp_path: Path) -> None:
    # each thread reuses one cursor for its reads: a hit or a miss must still end its
    # statement, or the connection would pin an old snapshot and hold checkpoints back
    path = tmp_path / "c.db"
    backend = from_url(f"sqlite:///{path}")
    backend.set("llmcache:t:a", b"v", None)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        for key, value in (("llmcache:t:a", b"v"), ("llmcache:t:absent", None)):
            assert backend.get(key) == value
            other.execute("UPDATE llmcache_entries SET size = size")  # a frame in the WAL
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0, f"a read of {key} kept its snapshot"
        backend.set("llmcache:t:a", b"w", None)
        assert backend.get("llmcache:t:a") == b"w"  # the reused cursor sees the new write
    finally:
        other.close()
        backend.close()


def test_a_sqlite_clear_deletes_in_bounded_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llmcache_sql.backend.CLEAR_BATCH", 4)
    backend = from_url(f"sqlite:///{tmp_path / 'c.db'}")
    assert isinstance(backend, SQLBackend)
    old = time.time() - 7200
    backend.set_many({f"llmcache:a:{i:02d}": b"x" for i in range(0, 30, 2)}, None, created=old)
    backend.set_many({f"llmcache:a:{i:02d}": b"x" for i in range(1, 30, 2)}, None)
    backend.set_many({f"llmcache:b:{i:02d}": b"x" for i in range(10)}, None, created=old)
    deleted: list[int] = []
    run = backend._run

    def spy(sql: str, args: Any, **kwargs: Any) -> Any:
        result = run(sql, args, **kwargs)
        if sql.startswith("DELETE"):
            deleted.append(result)
        return result

    monkeypatch.setattr(backend, "_run", spy)
    assert backend.clear("llmcache:a:*", older_than=3600) == 15  # by (namespace, created)
    assert deleted == [4, 4, 4, 3]
    assert backend.clear("llmcache:a:*7") == 3  # a sparse glob: the pages move on past misses
    assert backend.clear("*:0?") == 4 + 10  # no namespace: pages in rowid order
    assert backend.clear() == 8
    assert all(count <= 4 for count in deleted)
    assert rows_in(backend) == 0
    backend.close()


def test_a_sqlite_clear_batch_is_deleted_by_rowid_and_paged_by_an_index(tmp_path: Path) -> None:
    backend = from_url(f"sqlite:///{tmp_path / 'c.db'}")
    assert isinstance(backend, SQLBackend)
    backend.set("llmcache:a:1", b"x", None)
    statements = backend._statements
    assert statements is not None
    table = backend.schema.name
    for pattern, index in (("llmcache:a:*", f"ix_{table}_ns_created"), ("*", "PRIMARY KEY")):
        plan = statements.clear_batches(pattern, 60, time.time(), 100)
        after = {"after_created": 0.0, "after_rowid": 0}
        with backend.engine.connect() as conn:
            page = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + plan.next.sql, plan.next.args(after)
            ).all()
            delete = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + plan.delete.sql,
                plan.delete.args({f"k{i}": i for i in range(100)}),
            ).all()
        assert index in str(page)
        assert "TEMP B-TREE" not in str(page)  # no sort: the pages follow the index's order
        assert "INTEGER PRIMARY KEY (rowid=?)" in str(delete)  # never a scan under the lock
    backend.close()


# -- processes -----------------------------------------------------------------------------


_PROCESS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from llmcache_sql import from_url

    url, role, me, other, count, sync = sys.argv[1:7]
    count, sync = int(count), Path(sync)

    def meet(stage):  # a barrier between the two processes, in files
        (sync / f"{stage}-{me}").touch()
        deadline = time.monotonic() + 60
        while not (sync / f"{stage}-{other}").exists():
            if time.monotonic() > deadline:
                sys.exit(f"{me}: {other} never reached {stage}")
            time.sleep(0.005)

    backend = from_url(url, timeout=5.0)
    meet("start")
    if role == "create":  # the first call creates the tables, in both processes at once
        backend.set(f"llmcache:race:{me}", b"v", 60)
        print(0)
    else:
        for i in range(count):
            backend.set(f"llmcache:{me}:{i}", me.encode(), 600)
            if i % 10 == 0:
                backend.set_many({f"llmcache:{me}:m{i}:{j}": b"m" for j in range(5)}, 600)
            backend.get(f"llmcache:{other}:{i // 2}")
        meet("written")
        seen = backend.get_many([f"llmcache:{other}:{i}" for i in range(count)])
        print(sum(value == other.encode() for value in seen))
    backend.close()
    """
)


def run_pair(url: str, role: str, sync: Path, count: int = 0) -> list[int]:
    """Run the two processes of a test at once; return what each printed."""
    sync.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, url, role, me, other, str(count), str(sync)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, other in (("p1", "p2"), ("p2", "p1"))
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(int(out))
    return results


def test_two_processes_share_one_sqlite_file_while_both_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    count = 300
    assert run_pair(url, "write", tmp_path / "sync", count) == [count, count]
    backend = from_url(url)
    assert len(list(backend.scan())) == 2 * (count + 30 * 5)
    backend.close()


def test_two_processes_create_the_tables_at_once_without_error(
    tier_url: str, tmp_path: Path
) -> None:
    for round_ in range(3):
        url = tier_url.replace("cache.db", f"race{round_}.db").replace("table=", f"table=r{round_}")
        try:
            assert run_pair(url, "create", tmp_path / f"sync{round_}") == [0, 0]
            backend = from_url(url)
            assert {e.key for e in backend.scan("llmcache:race:*")} == {
                "llmcache:race:p1",
                "llmcache:race:p2",
            }
            backend.close()
        finally:
            if "table=" in url:
                drop_tables(url, url.split("table=", 1)[1])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_forked_child_uses_connections_of_its_own(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The parent's connections (PostgreSQL: its idle readers too) stay the parent's."""
    if kind == "sqlite":
        backend = from_url(f"sqlite:///{tmp_path / 'fork.db'}")
    else:
        backend = from_url(request.getfixturevalue("pg_table"))
    backend.set("llmcache:t:parent", b"p", None)
    assert backend.get("llmcache:t:parent") == b"p"  # the parent holds a connection now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child() -> None:
        backend.set("llmcache:t:child", b"c", None)
        queue.put(backend.get("llmcache:t:parent"))

    proc = ctx.Process(target=child)
    proc.start()
    assert queue.get(timeout=60) == b"p"
    proc.join(30)
    assert proc.exitcode == 0
    assert backend.get("llmcache:t:child") == b"c"
    assert backend.get("llmcache:t:parent") == b"p"  # its reader still answers the parent
    backend.close()


# -- failure -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme", ["postgresql+psycopg", "mysql+pymysql"], ids=["postgresql", "mariadb"]
)
def test_a_database_that_is_down_fails_within_the_timeout(scheme: str) -> None:
    backend = from_url(f"{scheme}://u@127.0.0.1:{free_port()}/db", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError):
        backend.get("k")
    assert time.monotonic() - started < 2.5
    backend.close()


@pytest.fixture(params=["postgresql", "mariadb"])
def proxied(request: pytest.FixtureRequest) -> Iterator[tuple[FaultProxy, str]]:
    """A server behind a fault-injecting proxy, and a tier URL through the proxy."""
    database: Database = request.getfixturevalue(
        "postgres_db" if request.param == "postgresql" else "mariadb_db"
    )
    server = sa.make_url(database.url)
    assert server.port is not None
    proxy = FaultProxy(server.port).start()
    table, url = table_url(database)
    try:
        yield proxy, url.replace(f":{server.port}/", f":{proxy.port}/")
    finally:
        proxy.stop()
        drop_tables(database.url, table)


def _timed_failure(call: Callable[[], Any]) -> float:
    """Return how long ``call`` took to fail (with the driver's error, or SQLAlchemy's)."""
    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)connection|timeout|timed out|closed"):
        call()
    return time.monotonic() - started


def test_a_stalled_server_costs_at_most_the_timeout_per_call(
    proxied: tuple[FaultProxy, str],
) -> None:
    proxy, url = proxied
    backend = from_url(url, timeout=0.5)
    backend.set("llmcache:t:k", b"v", 60)
    assert backend.get("llmcache:t:k") == b"v"  # a pooled connection is open
    proxy.set_mode("stall")  # answers vanish, on open and new connections alike
    assert _timed_failure(lambda: backend.get("llmcache:t:k")) < 1.2  # an open connection
    assert _timed_failure(lambda: backend.set("llmcache:t:k", b"w", 60)) < 1.2  # a new one
    proxy.set_mode("pass")
    assert backend.get("llmcache:t:k") == b"v"
    backend.close()


def test_a_stalled_server_costs_an_async_call_less_than_the_timeout(
    proxied: tuple[FaultProxy, str],
) -> None:
    proxy, url = proxied

    async def scenario() -> list[float]:
        backend = async_from_url(url, timeout=0.5)
        await backend.set("llmcache:t:k", b"v", 60)
        proxy.set_mode("stall")
        times = []
        for _ in range(2):
            started = time.monotonic()
            try:  # the client's own bound, as the tiers apply it
                await asyncio.wait_for(backend.get("llmcache:t:k"), 0.5)
            except Exception:  # the driver's error, or the client's TimeoutError
                pass
            else:
                pytest.fail("a stalled server answered")
            times.append(time.monotonic() - started)
        proxy.set_mode("pass")
        assert await backend.get("llmcache:t:k") == b"v"
        await backend.close()
        return times

    assert max(asyncio.run(scenario())) < 1.2


@pytest.mark.parametrize("proxied", ["postgresql"], indirect=True)  # psycopg's own readers
def test_an_async_postgresql_read_keeps_to_the_timeout_by_itself(
    proxied: tuple[FaultProxy, str],
) -> None:
    """Reads on psycopg's own connections are awaited without the core's timeout task."""
    proxy, url = proxied

    async def scenario() -> float:
        backend = async_from_url(url, timeout=0.5)
        assert getattr(backend, "awaits", None) == "bounded-reads"
        await backend.set("llmcache:t:k", b"v", 60)
        assert await backend.get("llmcache:t:k") == b"v"  # a reader is open
        proxy.set_mode("stall")
        started = time.monotonic()
        with pytest.raises(Exception, match=r"(?i)connection|closed|timeout"):
            await backend.get("llmcache:t:k")  # no bound around it: its own
        took = time.monotonic() - started
        proxy.set_mode("pass")
        assert await backend.get("llmcache:t:k") == b"v"  # the cut reader was dropped
        await backend.close()
        return took

    assert asyncio.run(scenario()) < 0.5


def test_statements_through_sqlalchemy_are_bounded_too(
    proxied: tuple[FaultProxy, str],
) -> None:
    """Table creation goes through SQLAlchemy, not the tier's cursor: it is bounded as well."""
    proxy, url = proxied
    backend = from_url(url, timeout=0.5)
    assert isinstance(backend, SQLBackend)
    with backend.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        proxy.set_mode("stall")
        assert _timed_failure(lambda: conn.exec_driver_sql("SELECT 1")) < 1.2
    proxy.set_mode("pass")

    async def scenario() -> float:
        tier = async_from_url(url, timeout=0.5)
        if not isinstance(tier, AsyncSQLBackend):
            return 0.0  # MySQL without a working asyncio driver: the sync tier, above
        async with tier.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
            proxy.set_mode("stall")
            started = time.monotonic()
            with pytest.raises(sa.exc.DBAPIError):
                await conn.exec_driver_sql("SELECT 1")
        await tier.engine.dispose()
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.2
    backend.close()


def test_a_locked_sqlite_file_fails_within_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    backend = from_url(f"sqlite:///{path}", timeout=0.3)
    backend.set("k", b"v", None)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert backend.get("k") == b"v"  # WAL: reads go on
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            backend.set("k", b"w", None)
        assert 0.25 < time.monotonic() - started < 2.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    backend.set("k", b"w", None)
    assert backend.get("k") == b"w"
    backend.close()


# -- end to end ----------------------------------------------------------------------------


def chat(content: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}]}


_SECOND_PROCESS = textwrap.dedent(
    """
    import sys
    from openai import OpenAI
    from llmcache import CachedClient
    client = CachedClient(OpenAI(base_url=sys.argv[1], api_key="x", max_retries=0),
                          tiers=[sys.argv[2]], namespace="e2e")
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is a cache?"}])
    print(answer.cache_hit, answer.cache_tier, answer.choices[0].message.content)
    client.close()
    """
)


def test_a_fresh_process_is_served_from_the_sqlite_file(sim: Simulator, tmp_path: Path) -> None:
    tier = f"sqlite:///{tmp_path / 'cache.db'}"
    client = CachedClient(
        OpenAI(base_url=sim.base_url, api_key="x", max_retries=0), tiers=[tier], namespace="e2e"
    )
    first = client.chat.completions.create(**chat("What is a cache?"))
    assert not first.cache_hit
    client.close()
    done = subprocess.run(
        [sys.executable, "-c", _SECOND_PROCESS, sim.base_url, tier],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    hit, label, content = done.stdout.strip().split(" ", 2)
    assert (hit, label) == ("True", "L1:sqlite")
    assert content == first.choices[0].message.content
    assert sim.count() == 1


def test_a_fresh_client_hits_a_postgresql_tier(sim: Simulator, pg_table_url: str) -> None:
    make = lambda: CachedClient(  # noqa: E731
        OpenAI(base_url=sim.base_url, api_key="x", max_retries=0), tiers=[pg_table_url]
    )
    with make() as first_client:
        first = first_client.chat.completions.create(**chat("Define idempotence."))
    with make() as second_client:
        second = second_client.chat.completions.create(**chat("Define idempotence."))
        assert second_client.clear_cache() == 1
    assert (first.cache_hit, second.cache_hit, second.cache_tier) == (False, True, "L1:postgresql")
    assert sim.count() == 1


@pytest.fixture
def pg_table_url(postgres_db: Database) -> Iterator[str]:
    table, url = table_url(postgres_db)
    yield url
    drop_tables(postgres_db.url, table)


def test_an_unreachable_postgresql_tier_fails_open(sim: Simulator, tmp_path: Path) -> None:
    dead = f"postgresql+psycopg://u@127.0.0.1:{free_port()}/db"
    client = CachedClient(
        OpenAI(base_url=sim.base_url, api_key="x", max_retries=0),
        tiers=["memory://", dead],
    )
    answers = [client.chat.completions.create(**chat(f"q{i}")) for i in range(3)]
    assert all(not a.cache_hit for a in answers)
    assert client.stats().errors >= 1
    assert client.chat.completions.create(**chat("q0")).cache_tier == "L1:memory"
    client.close()


def test_an_unreachable_postgresql_tier_fails_open_for_async_clients(sim: Simulator) -> None:
    dead = f"postgresql+psycopg://u@127.0.0.1:{free_port()}/db"

    async def scenario() -> tuple[list[bool], int]:
        client = CachedClient(
            AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0), tiers=[dead]
        )
        answers = [await client.chat.completions.create(**chat(f"a{i}")) for i in range(3)]
        errors = client.stats().errors
        await client.close()
        return [a.cache_hit for a in answers], errors

    hits, errors = asyncio.run(scenario())
    assert hits == [False, False, False]
    assert errors >= 1
    assert sim.count() == 3


def test_a_row_that_is_not_an_entry_is_a_counted_miss_and_is_replaced(
    sim: Simulator, tmp_path: Path
) -> None:
    tier = f"sqlite:///{tmp_path / 'cache.db'}"
    client = CachedClient(OpenAI(base_url=sim.base_url, api_key="x", max_retries=0), tiers=[tier])
    first = client.chat.completions.create(**chat("What is a cache?"))
    backend = client._tiers.tiers[0].backend
    pkey_ = f"llmcache:default:{first.cache_key}"
    backend.set(pkey_, b"\x93not an entry", None)
    again = client.chat.completions.create(**chat("What is a cache?"))
    assert not again.cache_hit
    assert client.stats().errors == 1
    assert sim.count() == 2
    assert backend.get(pkey_) != b"\x93not an entry"  # deleted, then stored afresh
    assert client.chat.completions.create(**chat("What is a cache?")).cache_hit
    client.close()


def test_an_async_client_hits_the_sqlite_file(sim: Simulator, tmp_path: Path) -> None:
    tier = f"sqlite:///{tmp_path / 'cache.db'}"

    async def scenario() -> list[bool]:
        hits = []
        for _ in range(2):
            client = CachedClient(
                AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0), tiers=[tier]
            )
            answer = await client.chat.completions.create(**chat("Explain LRU."))
            hits.append(answer.cache_hit)
            await client.close()
        return hits

    assert asyncio.run(scenario()) == [False, True]
    assert sim.count() == 1
