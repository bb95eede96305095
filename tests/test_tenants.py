"""Tenants stay apart: namespaces and scopes, clears, secrets in requests and in URLs.

On a shared in-process store, Redis, SQLite, PostgreSQL and memcached tiers:

- clients of different namespaces never read nor clear each other's entries, including
  namespaces one glob or ``LIKE`` wildcard away from each other (``t-1`` and ``t_1``) and
  namespaces that are prefixes of others;
- ``cache_key`` scopes never read each other, and clearing ``"<scope>:*"`` leaves every
  other scope alone, even when the scope holds ``* ? [ ] % _ \\`` (escaped with
  :func:`llmcache.backends.globs.escape`, as documented);
- no API key, organization, project or request header ever reaches a stored byte: every
  key and value of every store is read back raw and searched;
- a password in a tier URL never shows in logs, labels, reprs, errors or the CLI.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import tempfile
import traceback
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from anthropic import Anthropic
from click.testing import CliRunner
from conftest import chat
from openai import OpenAI
from plugins_for_tests import STORES, TestBackends

from llmcache import BackendError, CachedClient, ConfigError, hookimpl
from llmcache.backends.globs import escape
from llmcache.tools.simulator import Simulator, request_digest
from tests.memcached_fixtures import MemcachedServer, memcached_server
from tests.redis_fixtures import RedisServer, redis_server
from tests.servers import free_port
from tests.sql_fixtures import Database, drop_tables, postgres_db

__all__ = ["memcached_server", "postgres_db", "redis_server"]  # fixtures, used by name

BACKENDS = ["memory", "redis", "sqlite", "postgresql", "memcached"]


# -- the stores, and reading every byte they hold -------------------------------------------------


@dataclass
class Store:
    """A tier URL and a way to read back every key and value the store holds, raw."""

    kind: str
    url: str
    dump: Callable[[], list[bytes]]
    plugins: tuple[object, ...] = ()

    @property
    def counts(self) -> bool:
        """Whether ``clear`` reports how many entries it removed."""
        return self.kind != "memcached"


def _dump_redis(server: RedisServer) -> list[bytes]:
    import redis

    client: Any = redis.Redis(host="127.0.0.1", port=server.port)
    blobs: list[bytes] = []
    try:
        for key in client.scan_iter(count=1000):
            blobs.append(key)
            kind = client.type(key)
            if kind == b"string":
                blobs.append(client.get(key) or b"")
            elif kind == b"zset":
                blobs.extend(m for m, _ in client.zrange(key, 0, -1, withscores=True))
            elif kind == b"hash":
                for field, value in client.hgetall(key).items():
                    blobs.extend((field, value))
            elif kind == b"list":
                blobs.extend(client.lrange(key, 0, -1))
            elif kind == b"set":
                blobs.extend(client.smembers(key))
            else:
                blobs.append(client.dump(key) or b"")
    finally:
        client.close()
    return blobs


def _memcached_command(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        reply = b""
        while not reply.endswith((b"END\r\n", b"ERROR\r\n")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply


def _dump_memcached(server: MemcachedServer) -> list[bytes]:
    """Every key memcached holds (a walk of its hash table) and every value."""
    from urllib.parse import unquote_to_bytes

    from pymemcache.client.base import Client

    reply = _memcached_command(server.port, b"lru_crawler metadump hash\r\n")
    keys = [
        unquote_to_bytes(line.split(b" ")[0][len(b"key=") :])
        for line in reply.splitlines()
        if line.startswith(b"key=")
    ]
    client = Client(("127.0.0.1", server.port), connect_timeout=2, timeout=2)
    blobs: list[bytes] = []
    try:
        for key in keys:
            blobs.append(key)
            value = client.get(key.decode())
            if value is not None:
                blobs.append(value)
    finally:
        client.close()
    return blobs


def _dump_sql(url: str, table: str) -> list[bytes]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    blobs: list[bytes] = []
    try:
        with engine.connect() as conn:
            for name in (table, f"{table}_meta", f"{table}_locks"):
                for row in conn.exec_driver_sql(f"SELECT * FROM {name}"):
                    for value in row:
                        if isinstance(value, bytes | bytearray | memoryview):
                            blobs.append(bytes(value))
                        else:
                            blobs.append(str(value).encode())
    finally:
        engine.dispose()
    return blobs


def _dump_files(directory: Path) -> list[bytes]:
    """The SQLite database, its WAL and anything else on disk, byte for byte."""
    return [path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()]


def _dump_memory(name: str) -> list[bytes]:
    backend = STORES[name]
    blobs: list[bytes] = []
    for entry in backend.scan():
        blobs.append(entry.key.encode())
        blobs.append(backend.get(entry.key) or b"")
    return blobs


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    kind = request.param
    if kind == "memory":
        name = "tenants-" + uuid.uuid4().hex[:8]
        yield Store(kind, f"sharedmem://{name}", lambda: _dump_memory(name), (TestBackends(),))
        STORES.pop(name, None)
    elif kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        yield Store(kind, f"{server.url}/0", lambda: _dump_redis(server))
    elif kind == "memcached":
        memcached: MemcachedServer = request.getfixturevalue("memcached_server")
        yield Store(kind, memcached.url, lambda: _dump_memcached(memcached))
    elif kind == "sqlite":
        directory: Path = request.getfixturevalue("tmp_path")
        url = f"sqlite:///{directory / 'cache.db'}"
        yield Store(kind, url, lambda: _dump_files(directory) + _dump_sql(url, "llmcache_entries"))
    else:
        database: Database = request.getfixturevalue("postgres_db")
        table = "t_" + uuid.uuid4().hex[:12]
        try:
            yield Store(kind, database.table_url(table), lambda: _dump_sql(database.url, table))
        finally:
            drop_tables(database.url, table)


@pytest.fixture
def clients(store: Store, openai_client: OpenAI) -> Iterator[Callable[..., Any]]:
    """Build clients on ``store``; all are closed after the test."""
    made: list[Any] = []

    def make(namespace: str, **options: Any) -> Any:
        options.setdefault("wrapped", openai_client)
        wrapped = options.pop("wrapped")
        client = CachedClient(
            wrapped, tiers=[store.url], namespace=namespace, plugins=store.plugins, **options
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _ask(client: Any, prompt: str = "What do tenants share?", **options: Any) -> Any:
    kwargs = chat(prompt)
    response = client.chat.completions.create(**kwargs, **options)
    assert (response.choices[0].message.content or "").startswith(f"[{request_digest(kwargs)}]")
    return response


def _unique() -> str:
    return uuid.uuid4().hex[:6]


# -- namespaces ------------------------------------------------------------------------------------


def _neighbour_namespaces() -> list[str]:
    """Namespaces a sloppy prefix, glob or LIKE match would confuse with the first."""
    base = "t-" + _unique()
    return [base, base.replace("-", "_"), base + "0", base + ".x", base[:-1]]


def test_namespaces_never_read_each_others_entries(
    clients: Callable[..., Any], sim: Simulator
) -> None:
    tenants = [clients(name) for name in _neighbour_namespaces()]
    for tenant in tenants:
        assert not _ask(tenant).cache_hit
    assert sim.count() == len(tenants)
    for tenant in tenants:
        answer = _ask(tenant)
        assert answer.cache_hit
    assert sim.count() == len(tenants)


@pytest.mark.parametrize(
    "how", [{}, {"key": "*"}, {"older_than": 0}], ids=["all", "every-key", "older-than-0"]
)
def test_clearing_a_namespace_leaves_every_other_namespace_alone(
    store: Store, clients: Callable[..., Any], sim: Simulator, how: dict[str, Any]
) -> None:
    first, *others = (clients(name) for name in _neighbour_namespaces())
    for tenant in (first, *others):
        _ask(tenant)
        _ask(tenant, "a second question")
    removed = first.clear_cache(**how)
    assert removed == (2 if store.counts else 0)
    assert not _ask(first).cache_hit
    for tenant in others:
        assert _ask(tenant).cache_hit
        assert _ask(tenant, "a second question").cache_hit


@pytest.mark.parametrize("namespace", ["a*", "a?", "a[b]", "a:b", "a b", "", "a\\b", "a%"])
def test_a_namespace_cannot_hold_glob_or_separator_characters(
    namespace: str, openai_client: OpenAI
) -> None:
    with pytest.raises(ConfigError):
        CachedClient(openai_client, namespace=namespace)


# -- cache_key scopes ----------------------------------------------------------------------------

SCOPES = ["user_1", "user_10", "user_2", "USER_1", "user-1", "user_1x", None]


def test_scopes_never_read_each_others_entries(clients: Callable[..., Any], sim: Simulator) -> None:
    client = clients("scopes-" + _unique())
    for scope in SCOPES:
        assert not _ask(client, cache_key=scope).cache_hit
    assert sim.count() == len(SCOPES)
    for scope in SCOPES:
        assert _ask(client, cache_key=scope).cache_hit
    assert sim.count() == len(SCOPES)


def test_clearing_a_scope_leaves_every_other_scope_alone(
    store: Store, clients: Callable[..., Any], sim: Simulator
) -> None:
    client = clients("scopes-" + _unique())
    for scope in SCOPES:
        _ask(client, cache_key=scope)
    assert client.clear_cache(key="user_1:*") == (1 if store.counts else 0)
    assert not _ask(client, cache_key="user_1").cache_hit
    for scope in SCOPES[1:]:
        assert _ask(client, cache_key=scope).cache_hit, scope


# Each scope with characters some store treats as a pattern, and scopes an unescaped
# pattern (Redis MATCH, SQL LIKE, a regular expression) would also match.
LOOKALIKES = {
    "a*": ["abc", "a"],
    "a?": ["ab", "a!"],
    "a[bc]": ["ab", "ac"],
    "[!a]x": ["bx", "!x"],
    "a%": ["aXYZ", "a"],
    "a_": ["ab", "a-"],
    "a\\": ["a", "a\\\\"],
    "a^b": ["ab"],
    "a.b": ["aXb"],
    "a]": ["a"],
}


@pytest.mark.parametrize("scope", list(LOOKALIKES))
def test_glob_characters_in_a_scope_cannot_widen_a_clear(
    store: Store, clients: Callable[..., Any], sim: Simulator, scope: str
) -> None:
    client = clients("globs-" + _unique())
    others = LOOKALIKES[scope]
    for name in (scope, *others):
        _ask(client, cache_key=name)
    assert client.clear_cache(key=escape(scope) + ":*") == (1 if store.counts else 0)
    assert not _ask(client, cache_key=scope).cache_hit
    for name in others:
        assert _ask(client, cache_key=name).cache_hit, f"clearing {scope!r} removed {name!r}"


# -- secrets in requests --------------------------------------------------------------------------


def _texts(blob: bytes) -> Iterator[bytes]:
    """``blob`` and every string inside it: msgpack envelopes, zlib bodies, tier headers."""
    yield blob
    candidates = [blob]
    if len(blob) > 50 and blob[0] == 0xA7:  # the memcached tier's header
        candidates.append(blob[50:])
    for candidate in list(candidates):
        with contextlib.suppress(zlib.error):
            candidates.append(zlib.decompress(candidate))
    for candidate in candidates:
        try:
            value = msgpack.unpackb(candidate, strict_map_key=False)
        except Exception:
            continue
        yield from _strings(value)


def _strings(value: Any) -> Iterator[bytes]:
    if isinstance(value, str):
        yield value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        yield from _texts(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def test_api_keys_and_headers_never_reach_a_stored_byte(
    store: Store, clients: Callable[..., Any], sim: Simulator
) -> None:
    tag = uuid.uuid4().hex[:10]
    secrets = {
        "api key": f"sk-SECRETKEY-{tag}",
        "organization": f"org-SECRETORG-{tag}",
        "project": f"proj_SECRETPROJECT-{tag}",
        "default header": f"SECRETHEADER-{tag}",
        "extra header": f"SECRETEXTRA-{tag}",
        "anthropic key": f"sk-ant-SECRETANT-{tag}",
    }
    openai = OpenAI(
        base_url=sim.base_url,
        api_key=secrets["api key"],
        organization=secrets["organization"],
        project=secrets["project"],
        default_headers={"X-Tenant-Token": secrets["default header"]},
        max_retries=0,
    )
    anthropic = Anthropic(
        base_url=sim.anthropic_base_url,
        api_key=secrets["anthropic key"],
        default_headers={"X-Tenant-Token": secrets["default header"]},
        max_retries=0,
    )
    client = clients("secrets-" + tag, wrapped=openai, compress_threshold=1 << 30)
    claude = clients("secrets-anthropic-" + tag, wrapped=anthropic)
    extra: dict[str, Any] = {"extra_headers": {"X-Per-Call": secrets["extra header"]}}
    for _ in range(2):
        _ask(client, **extra)
        _ask(client, cache_key="user_1", **extra)
        stream = client.chat.completions.create(**chat("stream me"), stream=True, **extra)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], **extra)
        claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "hello"}],
            **extra,
        )
    assert client.stats().hits >= 4
    assert claude.stats().hits >= 1
    sent = [r.headers for r in sim.requests]
    assert any(secrets["extra header"] in h.values() for h in sent), "the secrets went nowhere"
    texts = [text for blob in store.dump() for text in _texts(blob)]
    assert any(tag.encode() in text for text in texts), "the scan did not see the entries"
    for what, secret in secrets.items():
        found = [text[:80] for text in texts if secret.encode() in text]
        assert found == [], f"the {what} was written to the {store.kind} store: {found}"
    openai.close()
    anthropic.close()


# -- passwords in URLs ---------------------------------------------------------------------------

PASSWORD = "Hunter2-s3cret"
AWKWARD = ["Hunter2-s3cret", "Hunter2%40s3cret", "Hunter2@s3cret", "Hunter2:s3cret"]


def _fragments(password: str) -> list[str]:
    """What must not show: the password, and each part of it around URL punctuation."""
    from urllib.parse import unquote

    plain = unquote(password)
    pieces = {plain, password}
    for separator in "@:/%":
        pieces.update(p for p in plain.split(separator) if len(p) >= 5)
    return sorted(pieces)


def _dead_port() -> int:
    return free_port()


def _urls(password: str, redis_port: int) -> dict[str, str]:
    dead = _dead_port()
    return {
        "redis": f"redis://default:{password}@127.0.0.1:{redis_port}/0",
        "redis-dead": f"redis://:{password}@127.0.0.1:{dead}/0",
        "redis-cluster": f"redis+cluster://:{password}@127.0.0.1:{dead},127.0.0.1:{dead}",
        "postgresql": f"postgresql+psycopg://postgres:{password}@127.0.0.1:{dead}/test",
        "mysql": f"mysql+pymysql://root:{password}@127.0.0.1:{dead}/test",
    }


class _Events:
    def __init__(self) -> None:
        self.errors: list[str] = []

    @hookimpl
    def llmcache_on_error(self, event: Any) -> None:
        self.errors.append(f"{event.tier} {event.error!r} {event.error}")


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


@pytest.fixture
def protected_redis() -> Iterator[RedisServer]:
    """A Redis server that wants a password (which the tests get wrong)."""
    from tests.redis_fixtures import RedisServer as Server

    workdir = Path(tempfile.mkdtemp(prefix="llmcache-tenants-auth-"))
    server = Server(workdir, extra=("--requirepass", "the-right-one"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("password", AWKWARD, ids=["plain", "encoded-at", "raw-at", "colon"])
def test_a_password_in_a_url_never_reaches_logs_labels_or_errors(
    password: str,
    protected_redis: RedisServer,
    openai_client: OpenAI,
    sim: Simulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    said: list[str] = []
    for name, url in _urls(password, protected_redis.port).items():
        events = _Events()
        with caplog.at_level(logging.DEBUG):
            try:
                client = CachedClient(
                    openai_client, tiers=["memory://", url], plugins=[events], backend_timeout=1
                )
            except ConfigError as exc:  # a URL the adapter refuses must say so safely
                said.append(_everything_said(exc))
                continue
            said += [repr(client), str(client.tiers)]
            _ask(client, f"fail open on {name}")
            said.append(str(client.stats()))
            client.close()
            strict = CachedClient(openai_client, tiers=[url], fail_open=False, backend_timeout=1)
            with pytest.raises(BackendError) as info:
                _ask(strict, f"fail closed on {name}")
            said.append(_everything_said(info.value))
            strict.close()
        said += events.errors
    said.append(caplog.text)
    everything = "\n".join(said)
    assert "L2:redis" in everything
    for fragment in _fragments(password):
        assert fragment not in everything, f"{fragment!r} leaked"


@pytest.mark.parametrize(
    "url",
    [
        "redis://:{pw}@127.0.0.1:6390/0?bogus=1",
        "redis://:{pw}@127.0.0.1:6390/0?timeout=-1",
        "redis://:{pw}@127.0.0.1:6390/0?max_ttl=soon",
        "rediss://:{pw}@127.0.0.1:6390/0?ssl_cert_reqs=sometimes",
        "redis+cluster://:{pw}@127.0.0.1:6390,127.0.0.1:6391/3",
        "postgresql+psycopg://postgres:{pw}@127.0.0.1:6390/test?bogus=1",
        "mysql+pymysql://root:{pw}@127.0.0.1:6390/test?table=no-dashes",
        "memcached://user:{pw}@127.0.0.1:6390",
        "nosuchscheme://user:{pw}@127.0.0.1:6390",
    ],
)
@pytest.mark.parametrize("password", AWKWARD, ids=["plain", "encoded-at", "raw-at", "colon"])
def test_a_rejected_url_never_shows_its_password(
    url: str, password: str, openai_client: OpenAI
) -> None:
    with pytest.raises(ConfigError) as info:
        CachedClient(openai_client, tiers=[url.format(pw=password)])
    message = _everything_said(info.value)
    for fragment in _fragments(password):
        assert fragment not in message, f"{fragment!r} leaked"


@pytest.mark.parametrize("password", AWKWARD, ids=["plain", "encoded-at", "raw-at", "colon"])
def test_the_command_line_never_shows_a_password(password: str) -> None:
    from llmcache.tools.cli import main

    url = f"redis://:{password}@127.0.0.1:{_dead_port()}/0"
    runner = CliRunner()
    outputs = [
        runner.invoke(main, ["stats", url, "--timeout", "0.5"]),
        runner.invoke(main, ["clear", url, "--timeout", "0.5", "--yes"]),
        runner.invoke(main, ["stats", url + "?bogus=1"]),
    ]
    for result in outputs:
        assert result.exit_code != 0
        text = result.output + (repr(result.exception) if result.exception else "")
        for fragment in _fragments(password):
            assert fragment not in text, f"{fragment!r} leaked: {text!r}"
