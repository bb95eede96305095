"""Bad bytes in a store are misses: counted, removed, never returned, never a crash.

Each bad entry is written with the raw driver (redis-py, SQLAlchemy, pymemcache) under the
physical key ``llmcache:<namespace>:<logical key>`` of a request the client has answered
before, on real Redis, SQLite, PostgreSQL and memcached tiers. memcached values carry the
tier's own 50-byte header (:mod:`llmcache_memcached.values`); the bad envelope is wrapped
in the header the tier wrote, so that the tier hands it to the core as it would a good one.

Then a call with ``only-if-cached`` must raise :class:`~llmcache.CacheMiss` (the entry was
not served), count one error and leave the key empty (removed); with the same bad entry
written again, a plain call must go upstream once, return the answer to its own request,
count one more error, and store a good entry that the next call hits.

The last tests check the code itself: no module can deserialise with pickle, marshal,
shelve, YAML or eval, and a pickle or YAML payload in the store runs nothing.
"""

from __future__ import annotations

import ast
import json
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import MODEL, chat
from openai import AsyncOpenAI, OpenAI

from llmcache import CachedClient, CacheMiss
from llmcache._rules.keys import physical_key
from llmcache.tools.simulator import Simulator, request_digest
from tests.faultproxy import record
from tests.memcached_fixtures import MemcachedServer, memcached_server
from tests.redis_fixtures import RedisServer, redis_server
from tests.sql_fixtures import Database, drop_tables, postgres_db

__all__ = ["memcached_server", "postgres_db", "redis_server"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["llmcache", "llmcache_redis", "llmcache_sql", "llmcache_memcached"]
SIGNING_KEY = "reliability-signing-key"
STORES = ["redis", "sqlite", "postgresql", "memcached"]


# -- raw access to each store ------------------------------------------------------------------


class RawStore:
    """Read and write the bytes a tier holds under a physical key, past the tier."""

    url: str
    kind: str

    def write(self, pkey: str, data: bytes) -> None:
        raise NotImplementedError

    def read(self, pkey: str) -> bytes | None:
        """Return the core's bytes under ``pkey``, or ``None`` when the key is empty."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class RedisStore(RawStore):
    def __init__(self, server: RedisServer) -> None:
        import redis

        self.url = f"{server.url}/0"
        self.client = redis.Redis(host="127.0.0.1", port=server.port)

    def write(self, pkey: str, data: bytes) -> None:
        self.client.set(pkey, data)

    def read(self, pkey: str) -> bytes | None:
        value: Any = self.client.get(pkey)
        return None if value is None else bytes(value)

    def close(self) -> None:
        self.client.close()


class SQLStore(RawStore):
    def __init__(self, base_url: str, table: str) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.base_url = base_url
        self.table = table
        self.url = f"{base_url}{'&' if '?' in base_url else '?'}table={table}"
        self.engine = sa.create_engine(base_url)

    def write(self, pkey: str, data: bytes) -> None:
        sql = self.sa.text(f"UPDATE {self.table} SET value = :value, size = :size WHERE key = :key")
        with self.engine.begin() as conn:
            updated = conn.execute(sql, {"value": data, "size": len(data), "key": pkey})
            if updated.rowcount == 0:
                namespace = pkey.split(":")[1]
                conn.execute(
                    self.sa.text(
                        f"INSERT INTO {self.table} (key, full_key, namespace, value, created, "
                        "expires, size) VALUES (:key, NULL, :ns, :value, :now, NULL, :size)"
                    ),
                    {
                        "key": pkey,
                        "ns": namespace,
                        "value": data,
                        "now": time.time(),
                        "size": len(data),
                    },
                )

    def read(self, pkey: str) -> bytes | None:
        sql = self.sa.text(f"SELECT value FROM {self.table} WHERE key = :key")
        with self.engine.connect() as conn:
            row = conn.execute(sql, {"key": pkey}).first()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self.engine.dispose()
        drop_tables(self.base_url, self.table)


class MemcachedStore(RawStore):
    """Raw pymemcache access; values are wrapped in the header the tier itself wrote."""

    def __init__(self, server: MemcachedServer) -> None:
        from pymemcache.client.base import Client

        from llmcache_memcached.values import HEADER

        self.header = HEADER
        self.headers: dict[str, bytes] = {}  # the last header the tier wrote, per key
        self.url = server.url
        self.client = Client(("127.0.0.1", server.port), connect_timeout=2, timeout=2)

    def write(self, pkey: str, data: bytes) -> None:
        from llmcache_memcached.keys import entry_key

        key = entry_key(pkey)
        current = self.client.get(key)
        if current is not None:
            self.headers[key] = current[: self.header.size]
        assert key in self.headers, "bad bytes are wrapped in a header the tier wrote"
        fields = list(self.header.unpack_from(self.headers[key]))
        fields[1] = 0  # flags: the payload is not compressed
        self.client.set(key, self.header.pack(*fields) + data, noreply=False)

    def read(self, pkey: str) -> bytes | None:
        from llmcache_memcached.keys import entry_key
        from llmcache_memcached.values import payload

        value = self.client.get(entry_key(pkey))
        if value is None:
            return None
        return payload(value, self.header.unpack_from(value)[1])

    def write_unwrapped(self, pkey: str, data: bytes) -> None:
        from llmcache_memcached.keys import entry_key

        self.client.set(entry_key(pkey), data, noreply=False)

    def close(self) -> None:
        self.client.close()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[RawStore]:
    kind = request.param
    raw: RawStore
    table = "t_" + uuid.uuid4().hex[:12]
    if kind == "redis":
        raw = RedisStore(request.getfixturevalue("redis_server"))
    elif kind == "memcached":
        raw = MemcachedStore(request.getfixturevalue("memcached_server"))
    elif kind == "sqlite":
        directory: Path = request.getfixturevalue("tmp_path")
        raw = SQLStore(f"sqlite:///{directory / 'cache.db'}", table)
    else:
        database: Database = request.getfixturevalue("postgres_db")
        raw = SQLStore(database.url, table)
    raw.kind = kind
    try:
        yield raw
    finally:
        raw.close()


# -- the bad entries -----------------------------------------------------------------------


@dataclass(frozen=True)
class Good:
    """The good bytes a corruption starts from, and where a payload must leave a trace."""

    this: bytes  # the entry of the request under test, under its own key
    other: bytes  # the entry of another request, under that request's key
    pkey: str  # the physical key under test
    marker: Path  # a file that exists only if stored bytes ran code


def _parts(data: bytes) -> list[Any]:
    return list(msgpack.unpackb(data))


def _header(data: bytes, index: int, value: Any) -> bytes:
    parts = _parts(data)
    header = list(parts[2])
    header[index] = value
    parts[2] = header
    return bytes(msgpack.packb(parts))


def _pickle_that_writes(path: Path) -> bytes:
    """A protocol-0 pickle that, if ever unpickled, creates ``path``: ``open(path, "w")``."""
    return b"cbuiltins\nopen\n(V" + str(path).encode() + b"\nVw\ntR."


def _yaml_that_writes(path: Path) -> bytes:
    return f"!!python/object/apply:builtins.open [{str(path)!r}, w]".encode()


def _signature(data: bytes, change: Callable[[bytes], bytes]) -> bytes:
    parts = _parts(data)
    parts[4] = change(parts[4])
    return bytes(msgpack.packb(parts))


def _tampered_body(data: bytes) -> bytes:
    parts = _parts(data)
    payload = msgpack.unpackb(parts[3])
    text = isinstance(payload, bytes)  # the response's JSON text, as the server sent it
    if text:
        payload = json.loads(payload)
    payload["choices"][0]["message"]["content"] = "[000000000000] an answer nobody asked for"
    parts[3] = msgpack.packb(json.dumps(payload).encode() if text else payload)
    return bytes(msgpack.packb(parts))


def _with_body(data: bytes, body: Any) -> bytes:
    parts = _parts(data)
    parts[3] = body
    return bytes(msgpack.packb(parts))


@dataclass(frozen=True)
class Case:
    signed: bool
    make: Callable[[Good], bytes]
    why: str


CASES: dict[str, Case] = {
    "garbage": Case(False, lambda g: b"\x00\xff garbage \xc1\xc1 not msgpack", "not msgpack"),
    "truncated": Case(False, lambda g: g.this[: len(g.this) // 2], "msgpack cut in half"),
    "empty": Case(False, lambda g: b"", "zero bytes"),
    "wrong-version": Case(False, lambda g: _with_version(g.this, 2), "envelope version 2"),
    "not-an-envelope": Case(
        False, lambda g: bytes(msgpack.packb({"choices": []})), "msgpack, but a map"
    ),
    "bad-zlib-body": Case(
        False,
        lambda g: _with_body(_header(g.this, 7, 1), b"not zlib at all"),
        "codec says zlib, body is not",
    ),
    "unknown-codec": Case(False, lambda g: _header(g.this, 7, 99), "body codec 99"),
    "forged-collision": Case(False, lambda g: g.other, "another request's entry"),
    "missing-signature": Case(
        True, lambda g: _signature(g.this, lambda s: b""), "signature removed"
    ),
    "bad-signature": Case(
        True,
        lambda g: _signature(g.this, lambda s: s[:-1] + bytes([s[-1] ^ 1])),
        "one bit of the signature flipped",
    ),
    "tampered-body": Case(True, lambda g: _tampered_body(g.this), "answer edited, signature kept"),
    "forged-collision-signed": Case(True, lambda g: g.other, "another request's signed entry"),
    "forged-header-key": Case(
        True, lambda g: _header(g.other, 0, g.pkey), "another request's entry, key rewritten"
    ),
    "pickle": Case(False, lambda g: _pickle_that_writes(g.marker), "a pickle that opens a file"),
    "yaml": Case(False, lambda g: _yaml_that_writes(g.marker), "a YAML python/object tag"),
    "pickle-in-envelope": Case(
        False,
        lambda g: _with_body(_header(g.this, 7, 0), _pickle_that_writes(g.marker)),
        "a pickle as the body of a valid envelope",
    ),
    # well-formed envelopes for the right key whose content cannot be an answer: what a
    # poisoned store without a signing key can hold
    "payload-not-a-response": Case(
        False, lambda g: _with_body(_header(g.this, 7, 2), "hello"), "payload is a string"
    ),
    "model-not-a-string": Case(False, lambda g: _header(g.this, 4, 12345), "model is 12345"),
    "kind-mismatch": Case(
        False, lambda g: _header(g.this, 3, "chunks"), "a response payload said to be chunks"
    ),
    "negative-tokens": Case(
        False, lambda g: _header(g.this, 5, -1_000_000), "prompt tokens -1000000"
    ),
}


def _with_version(data: bytes, version: int) -> bytes:
    parts = _parts(data)
    parts[1] = version
    return bytes(msgpack.packb(parts))


# -- the tests -----------------------------------------------------------------------------------


def _answer_is_for(response: Any, kwargs: dict[str, Any]) -> bool:
    content = response.choices[0].message.content or ""
    return content.startswith(f"[{request_digest(kwargs)}]")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_entry_is_a_counted_miss_removed_and_never_returned(
    store: RawStore, case: str, openai_client: OpenAI, sim: Simulator, tmp_path: Path
) -> None:
    spec = CASES[case]
    namespace = "bad-" + uuid.uuid4().hex[:8]
    client = CachedClient(
        openai_client,
        tiers=[store.url],
        namespace=namespace,
        signing_key=SIGNING_KEY if spec.signed else None,
    )
    try:
        asked, other = chat(f"question {case}"), chat(f"another question {case}")
        first = client.chat.completions.create(**asked)
        second = client.chat.completions.create(**other)
        pkey = physical_key(namespace, first.cache_key)
        this, that = store.read(pkey), store.read(physical_key(namespace, second.cache_key))
        assert this is not None
        assert that is not None
        bad = spec.make(Good(this, that, pkey, tmp_path / "pwned"))
        assert bad != this

        store.write(pkey, bad)
        errors = client.stats().errors
        with pytest.raises(CacheMiss):
            client.chat.completions.create(**asked, cache_control="only-if-cached")
        assert client.stats().errors == errors + 1, "the bad entry was not counted"
        assert store.read(pkey) is None, "the bad entry was not removed"

        store.write(pkey, bad)
        upstream = sim.count()
        again = client.chat.completions.create(**asked)
        assert not again.cache_hit
        assert _answer_is_for(again, asked), "served an answer to another request"
        assert sim.count() == upstream + 1
        assert client.stats().errors == errors + 2
        fresh = client.chat.completions.create(**asked)
        assert fresh.cache_hit
        assert _answer_is_for(fresh, asked)
        assert not (tmp_path / "pwned").exists(), "stored bytes ran code"
    finally:
        client.close()
    record(
        f"bad-data/{store.kind}/{case}",
        why=spec.why,
        signed=spec.signed,
        tries=2,
        misses=2,
        counted=2,
        removed=1,
        wrongly_served=0,
        crashes=0,
    )


@pytest.mark.parametrize("case", ["garbage", "forged-collision", "payload-not-a-response"])
def test_bad_entry_behind_a_streamed_call_is_a_miss_streamed_live(
    store: RawStore, case: str, openai_client: OpenAI, sim: Simulator, tmp_path: Path
) -> None:
    spec = CASES[case]
    namespace = "bad-stream-" + uuid.uuid4().hex[:8]
    client = CachedClient(openai_client, tiers=[store.url], namespace=namespace)
    try:
        asked = chat(f"stream {case}")
        first = client.chat.completions.create(**asked)
        other = client.chat.completions.create(**chat(f"other stream {case}"))
        pkey = physical_key(namespace, first.cache_key)
        this = store.read(pkey)
        that = store.read(physical_key(namespace, other.cache_key))
        assert this is not None
        assert that is not None
        store.write(pkey, spec.make(Good(this, that, pkey, tmp_path / "pwned")))
        stream = client.chat.completions.create(**asked, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert not stream.cache_hit
        assert text.startswith(f"[{request_digest(asked)}]")
        assert client.stats().errors == 1
    finally:
        client.close()


@pytest.mark.parametrize("case", ["garbage", "forged-collision", "wrong-version"])
def test_bad_entry_among_embedding_inputs_is_refetched_alone(
    store: RawStore, case: str, openai_client: OpenAI, sim: Simulator, tmp_path: Path
) -> None:
    spec = CASES[case]
    namespace = "bad-embed-" + uuid.uuid4().hex[:8]
    client = CachedClient(openai_client, tiers=[store.url], namespace=namespace)
    try:
        inputs = ["alpha", "beta", "gamma"]
        first = client.embeddings.create(model="text-embedding-3-small", input=inputs)
        keys = first.cache_key.split(",")
        assert len(keys) == 3
        pkeys = [physical_key(namespace, key) for key in keys]
        this, that = store.read(pkeys[1]), store.read(pkeys[0])
        assert this is not None
        assert that is not None
        store.write(pkeys[1], spec.make(Good(this, that, pkeys[1], tmp_path / "pwned")))
        sim.reset()
        again = client.embeddings.create(model="text-embedding-3-small", input=inputs)
        assert [d.embedding for d in again.data] == [d.embedding for d in first.data]
        assert [d.index for d in again.data] == [0, 1, 2]
        assert not again.cache_hit
        assert [r.body["input"] for r in sim.requests] == [["beta"]]
        assert client.stats().errors == 1
        assert client.embeddings.create(model="text-embedding-3-small", input=inputs).cache_hit
    finally:
        client.close()


async def test_bad_entries_are_misses_for_async_clients_too(
    redis_server: RedisServer, sim: Simulator
) -> None:
    raw = RedisStore(redis_server)
    namespace = "bad-async-" + uuid.uuid4().hex[:8]
    upstream = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    client: Any = CachedClient(upstream, tiers=[raw.url], namespace=namespace)
    try:
        for n, case in enumerate(["garbage", "truncated", "wrong-version", "forged-collision"]):
            asked = chat(f"async {case}")
            first = await client.chat.completions.create(**asked)
            other = await client.chat.completions.create(**chat(f"async other {case}"))
            pkey = physical_key(namespace, first.cache_key)
            this = raw.read(pkey)
            that = raw.read(physical_key(namespace, other.cache_key))
            assert this is not None
            assert that is not None
            raw.write(pkey, CASES[case].make(Good(this, that, pkey, Path("/nonexistent"))))
            again = await client.chat.completions.create(**asked)
            assert not again.cache_hit, case
            assert _answer_is_for(again, asked), case
            assert client.stats().errors == n + 1
            assert (await client.chat.completions.create(**asked)).cache_hit
    finally:
        await client.close()
        await upstream.close()
        raw.close()


def test_memcached_value_without_the_tier_header_is_a_plain_miss(
    memcached_server: MemcachedServer, openai_client: OpenAI, sim: Simulator
) -> None:
    raw = MemcachedStore(memcached_server)
    namespace = "bad-unwrapped-" + uuid.uuid4().hex[:8]
    client = CachedClient(openai_client, tiers=[raw.url], namespace=namespace)
    try:
        asked = chat("unwrapped")
        first = client.chat.completions.create(**asked)
        for junk in (b"", b"\x00", b"\xa7" + b"\x00" * 10, b"x" * 200):
            raw.write_unwrapped(physical_key(namespace, first.cache_key), junk)
            again = client.chat.completions.create(**asked)
            assert not again.cache_hit
            assert _answer_is_for(again, asked)
    finally:
        client.close()
        raw.close()


def test_signed_client_never_serves_entries_of_a_client_with_another_key(
    redis_server: RedisServer, openai_client: OpenAI, sim: Simulator
) -> None:
    raw = RedisStore(redis_server)
    namespace = "bad-keys-" + uuid.uuid4().hex[:8]
    writer = CachedClient(
        openai_client, tiers=[raw.url], namespace=namespace, signing_key="key-one"
    )
    reader = CachedClient(
        openai_client, tiers=[raw.url], namespace=namespace, signing_key="key-two"
    )
    try:
        asked = chat("signed elsewhere")
        writer.chat.completions.create(**asked)
        assert writer.chat.completions.create(**asked).cache_hit
        answer = reader.chat.completions.create(**asked)
        assert not answer.cache_hit
        assert reader.stats().errors == 1
        assert _answer_is_for(answer, asked)
    finally:
        writer.close()
        reader.close()
        raw.close()


# -- no unsafe deserialisation, anywhere ---------------------------------------------------------

_BANNED_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
_BANNED_MODULES |= {"jsonpickle", "joblib", "yaml", "ruamel", "copyreg"}
_BANNED_BUILTINS = {"eval", "exec", "compile", "__import__", "execfile", "input", "breakpoint"}
_BANNED_HOOKS = {"ext_hook", "object_hook", "object_pairs_hook", "list_hook"}
# every place that imports a module by a computed name, reviewed: the names come from
# llmcache's own code (a fixed table), never from stored bytes or a request
_REVIEWED_IMPORTS = {
    ("llmcache/_plugins.py", "import_module"),  # fixed names: the built-in plugins
    ("llmcache/_moved.py", "import_module"),  # fixed names: the MOVED table
    ("llmcache/http/transport.py", "import_module"),  # fixed names: httpx2, httpx, SDKs
    ("llmcache/semantic/extras.py", "import_module"),  # fixed names: the embedders' wheels
    ("llmcache/testmode/session.py", "import_module"),  # fixed names: httpx2, httpx
}


def _sources() -> Iterator[tuple[str, ast.AST]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            yield relative, ast.parse(path.read_text(), filename=relative)


def _called_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def test_no_module_can_deserialise_code_from_stored_bytes() -> None:
    problems: list[str] = []
    dynamic_imports: set[tuple[str, str]] = set()
    for path, tree in _sources():
        for node in ast.walk(tree):
            where = f"{path}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in _BANNED_MODULES:
                        problems.append(f"{where} imports {alias.name}")
            elif isinstance(node, ast.ImportFrom):
                module = (node.module or "").split(".")[0]
                if module in _BANNED_MODULES:
                    problems.append(f"{where} imports from {node.module}")
                if module == "importlib" and any(a.name == "import_module" for a in node.names):
                    dynamic_imports.add((path, "import_module"))
            elif isinstance(node, ast.Call):
                name = _called_name(node)
                if isinstance(node.func, ast.Name) and name in _BANNED_BUILTINS:
                    problems.append(f"{where} calls {name}()")
                if (  # builtins.eval(...); Redis's client.eval() runs Lua on the server
                    isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in {"builtins", "__builtins__"}
                    and name in _BANNED_BUILTINS
                ):
                    problems.append(f"{where} calls builtins.{name}()")
                if name in {"load", "loads", "unsafe_load", "full_load"} and isinstance(
                    node.func, ast.Attribute
                ):
                    owner = node.func.value
                    if isinstance(owner, ast.Name) and owner.id in _BANNED_MODULES:
                        problems.append(f"{where} calls {owner.id}.{name}()")
                if name in {"import_module", "__import__", "load_module", "exec_module"}:
                    dynamic_imports.add((path, name))
                for keyword in node.keywords:
                    if keyword.arg in _BANNED_HOOKS:
                        problems.append(f"{where} passes {keyword.arg}= to {name}()")
            elif isinstance(node, ast.Attribute) and node.attr in {"__reduce__", "__setstate__"}:
                problems.append(f"{where} uses {node.attr}")
    assert problems == []
    assert dynamic_imports <= _REVIEWED_IMPORTS, (
        f"imports by computed name need review: {sorted(dynamic_imports - _REVIEWED_IMPORTS)}"
    )


def test_msgpack_is_decoded_to_plain_data_only() -> None:
    """msgpack's ext types reach the core as inert values, never as objects it builds."""
    from llmcache._tiers.codec import Codec, CorruptEntry

    codec = Codec()
    ext = msgpack.ExtType(42, _pickle_that_writes(Path("/nonexistent/pwned")))
    envelope = msgpack.packb(["llmc", 1, ["k", 1.0, None, "response", MODEL, 1, 1, 2], ext, b""])
    try:
        entry = codec.decode(envelope, "k")
    except CorruptEntry:
        return
    assert isinstance(entry.payload, msgpack.ExtType)
    assert not Path("/nonexistent/pwned").exists()


def test_a_store_full_of_bombs_costs_no_more_than_its_size(tmp_path: Path) -> None:
    """Lengths in a msgpack header are not trusted: a tiny value cannot claim gigabytes."""
    from llmcache._tiers.codec import Codec, CorruptEntry

    codec = Codec()
    bombs = [
        b"\xdd\xff\xff\xff\xff",  # an array of 4 billion items, with none present
        b"\xdb\xff\xff\xff\xff",  # a 4 GiB string, with no bytes
        b"\xc6\xff\xff\xff\xff",  # a 4 GiB binary, with no bytes
        b"\x95" + b"\x91" * 100_000,  # 100,000 nested arrays
        struct.pack(">B", 0xDF) + b"\xff\xff\xff\xff",  # a map of 4 billion pairs
    ]
    for bomb in bombs:
        started = time.perf_counter()
        with pytest.raises(CorruptEntry):
            codec.decode(bomb, "k")
        assert time.perf_counter() - started < 1.0
