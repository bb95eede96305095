"""Semantic matching searched in PostgreSQL with pgvector, and without it.

Against real servers (see :mod:`tests.pgvector_fixtures`): one whose server has pgvector,
where vectors go to the tier's vector table and the nearest-neighbour search runs in the
server (the in-process index stays empty), and one without it, where the in-process search
goes on as before after one log line.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from openai import AsyncOpenAI

from llmcache import CachedClient
from llmcache.semantic.embedders import WordLlamaEmbedder
from llmcache.tools.simulator import Simulator
from llmcache_sql.plugin import from_url
from tests.pgvector_fixtures import drop_vector_tables, pgvector_db, plain_postgres_db
from tests.sql_fixtures import Database, postgres_db, table_url
from tests.test_semantic_shared import WRITER, ask

__all__ = ["pgvector_db", "plain_postgres_db", "postgres_db"]  # fixtures, used by name

SEMANTIC = {"threshold": 0.85, "sync_interval": 0}
DIM = WordLlamaEmbedder.dim


def _tier(database: Database) -> Iterator[tuple[str, str]]:
    table, url = table_url(database)
    yield table, url
    drop_vector_tables(url, table)


@pytest.fixture
def vector_tier(pgvector_db: Database) -> Iterator[tuple[str, str]]:
    """A fresh table on the server with pgvector: ``(table, tier URL)``."""
    yield from _tier(pgvector_db)


@pytest.fixture
def plain_tier(plain_postgres_db: Database) -> Iterator[tuple[str, str]]:
    """A fresh table on a server without pgvector: ``(table, tier URL)``."""
    yield from _tier(plain_postgres_db)


def rows(url: str, sql: str) -> list[Any]:
    engine = sa.create_engine(url.split("?", 1)[0])
    try:
        with engine.begin() as conn:
            result = conn.exec_driver_sql(sql)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def vector_rows(url: str, table: str) -> list[Any]:
    return rows(url, f"SELECT key, space, expires FROM {table}_v{DIM} ORDER BY key")


def write_from_another_process(sim: Simulator, url: str) -> str:
    written = subprocess.run(
        [sys.executable, "-c", WRITER, sim.base_url, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return written.stdout.strip()


def test_a_question_of_another_process_is_found_by_the_server(
    vector_tier: tuple[str, str], sim: Simulator, make_client: Callable[..., Any]
) -> None:
    table, url = vector_tier
    key = write_from_another_process(sim, url)
    stored = vector_rows(url, table)
    assert len(stored) == 1  # the writer's vector, in the server's vector table
    assert stored[0][0].startswith("llmcache:default:" + key + "~sem~")

    client = make_client(tiers=[url], semantic=SEMANTIC)
    near = ask(client, "How can I lose weight quickly?")
    assert near.cache_match == "semantic"
    assert near.cache_key == key
    assert near.cache_similarity >= 0.85
    assert sim.count("/v1/chat/completions") == 1
    # searched in the server: nothing was listed or indexed in this process
    assert client._core.semantic._indexes == {}
    # an answer-changing edit is a miss, whose vector joins the table in the same space
    assert ask(client, "How can I gain weight fast?").cache_match is None
    after = vector_rows(url, table)
    assert len(after) == 2
    assert after[0][1] == after[1][1]
    assert client._core.semantic._indexes == {}


def test_the_search_uses_the_hnsw_index(vector_tier: tuple[str, str]) -> None:
    table, url = vector_tier
    backend = from_url(url, timeout=120)  # thousands of rows into an HNSW graph at once
    try:
        assert backend.vectors(DIM) is True  # type: ignore[attr-defined]
        rng = np.random.default_rng(3)
        vectors = rng.normal(size=(3000, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        keys = [f"llmcache:default:k{n}~sem~p" for n in range(len(vectors))]
        backend.set_many(dict.fromkeys(keys, b"record"), None)
        items = [(k, "space-a", v.tolist()) for k, v in zip(keys, vectors, strict=True)]
        backend.put_vectors(DIM, items)  # type: ignore[attr-defined]
        rows(url, f"ANALYZE {table}_v{DIM}")
        probe = vectors[42] * 0.9 + rng.normal(size=DIM).astype(np.float32) * 0.01
        found = backend.search_vectors(DIM, "space-a", probe.tolist(), 3, -1.0)  # type: ignore[attr-defined]
        assert found[0][0] == keys[42]
        assert found[0][1] > 0.95
        assert found[0][2] == b"record"  # the record, read in the same statement
        near = backend.search_vectors(DIM, "space-a", probe.tolist(), 3, 0.95)  # type: ignore[attr-defined]
        assert [key for key, _, _ in near] == [keys[42]]  # the floor leaves the far ones out
        assert backend.search_vectors(DIM, "space-b", probe.tolist(), 3, -1.0) == []  # type: ignore[attr-defined]
        # a small partition beside a large one: its own nearest, not the large one's leftovers
        small = [f"llmcache:default:s{n}~sem~q" for n in range(20)]
        backend.set_many(dict.fromkeys(small, b"record"), None)
        backend.put_vectors(DIM, [(k, "space-b", vectors[n].tolist()) for n, k in enumerate(small)])  # type: ignore[attr-defined]
        rows(url, f"ANALYZE {table}_v{DIM}")
        for _ in range(8):  # past psycopg's threshold for preparing a statement server-side
            found = backend.search_vectors(DIM, "space-b", vectors[7].tolist(), 3, -1.0)  # type: ignore[attr-defined]
            assert found[0][0] == small[7]
            assert len(found) == 3
        literal = "[" + ",".join(f"{x:.9g}" for x in probe) + "]"
        plan = rows(
            url,
            f"EXPLAIN SELECT key FROM {table}_v{DIM} WHERE space = 'space-a' "
            f"AND (expires IS NULL OR expires > 0) "
            f"ORDER BY embedding <=> '{literal}'::vector({DIM}) LIMIT 5",
        )
        assert f"ix_{table}_v{DIM}_hnsw" in "\n".join(line for (line,) in plan)
    finally:
        backend.close()


def test_clears_and_expiry_take_the_vectors_along(
    vector_tier: tuple[str, str], make_client: Callable[..., Any]
) -> None:
    table, url = vector_tier
    writer = make_client(tiers=[url], semantic=SEMANTIC)
    first = ask(writer, "How can I lose weight fast?")
    ask(writer, "What is the best way to learn Python?")
    assert len(vector_rows(url, table)) == 2
    # a glob clearing one entry clears its vector record, and the server its vector
    assert writer.clear_cache(key=first.cache_key + "*") == 2
    assert len(vector_rows(url, table)) == 1
    reader = make_client(tiers=[url], semantic=SEMANTIC)
    assert ask(reader, "How can I lose weight quickly?").cache_match is None
    # a clear by age, then a whole clear
    assert writer.clear_cache(older_than=3600) == 0
    assert len(vector_rows(url, table)) == 2  # the reader's miss stored its own
    assert writer.clear_cache() >= 4
    assert vector_rows(url, table) == []


def test_an_expired_entry_is_not_served_and_its_vector_is_purged(
    vector_tier: tuple[str, str], make_client: Callable[..., Any]
) -> None:
    table, url = vector_tier
    writer = make_client(tiers=[url], semantic=SEMANTIC, default_ttl=1)
    ask(writer, "How can I lose weight fast?")
    stored = vector_rows(url, table)
    assert len(stored) == 1
    assert stored[0][2] is not None  # the entry's expiry, copied
    reader = make_client(tiers=[url], semantic=SEMANTIC, default_ttl=1)
    assert ask(reader, "How can I lose weight quickly?").cache_match == "semantic"
    time.sleep(1.2)
    other = make_client(tiers=[url], semantic=SEMANTIC)
    assert ask(other, "How can I shed weight quickly?").cache_match is None
    backend = from_url(url)
    try:
        backend.purge()  # type: ignore[attr-defined]  # (the last write may have purged already)
    finally:
        backend.close()
    assert rows(url, f"SELECT count(*) FROM {table}") == [(2,)]  # the last miss's entry, record
    assert len(vector_rows(url, table)) == 1  # and its vector: the expired one went with its record


class WrongSize:
    """An embedder that says it answers 256 numbers and answers 100."""

    name = "wrong-size"
    dim = DIM

    def embed(self, texts: list[str]) -> Any:
        return np.ones((len(texts), 100), dtype=np.float32)


def test_vectors_of_the_wrong_size_are_refused_with_one_warning(
    vector_tier: tuple[str, str],
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    table, url = vector_tier
    client = make_client(tiers=[url], semantic={"threshold": 0.85, "embedder": WrongSize()})
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        assert ask(client, "How can I lose weight fast?").cache_match is None
        assert ask(client, "How can I lose weight quickly?").cache_match is None
    warned = [r for r in caplog.records if "(1, 100)" in r.getMessage()]
    assert len(warned) == 1
    assert client.stats().semantic_errors == 2
    assert rows(url, f"SELECT to_regclass('{table}_v{DIM}')") == [(None,)]  # never made


async def test_an_async_client_searches_in_the_server(
    vector_tier: tuple[str, str], sim: Simulator
) -> None:
    table, url = vector_tier
    key = write_from_another_process(sim, url)
    openai = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    client = CachedClient(openai, tiers=[url], semantic=SEMANTIC)
    try:
        near = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "How can I lose weight quickly?"}],
        )
        assert near.cache_match == "semantic"
        assert near.cache_key == key
        assert client._core.semantic._indexes == {}
        # its own misses go to the vector table too, and a second async client finds them
        await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "What is the best way to learn Python?"}],
        )
        assert len(await asyncio.to_thread(vector_rows, url, table)) == 2
        other = CachedClient(openai, tiers=[url], semantic=SEMANTIC)
        try:
            found = await other.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "What is the best way for learning Python?"}],
            )
            assert found.cache_match == "semantic"
        finally:
            await other.close()
        await client.clear_cache()
        assert await asyncio.to_thread(vector_rows, url, table) == []
    finally:
        await client.close()


def test_without_pgvector_the_search_stays_in_process_after_one_log_line(
    plain_tier: tuple[str, str],
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    table, url = plain_tier
    with caplog.at_level(logging.WARNING):
        writer = make_client(tiers=[url], semantic=SEMANTIC)
        first = ask(writer, "How can I lose weight fast?")
        ask(writer, "What is the best way to learn Python?")
        reader = make_client(tiers=[url], semantic=SEMANTIC)
        near = ask(reader, "How can I lose weight quickly?")
    assert near.cache_match == "semantic"
    assert near.cache_key == first.cache_key
    assert len(reader._core.semantic._indexes) == 1  # listed and searched in-process
    said = [r for r in caplog.records if "pgvector was not found" in r.getMessage()]
    assert len(said) == 2  # once for each client's tier, however many calls
    assert "no 'vector' extension" in said[0].getMessage()
    assert rows(url, f"SELECT to_regclass('{table}_v{DIM}')") == [(None,)]


async def test_an_async_client_alone_makes_the_vector_table_and_finds_its_questions(
    vector_tier: tuple[str, str], sim: Simulator
) -> None:
    table, url = vector_tier
    openai = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    writer = CachedClient(openai, tiers=[url], semantic=SEMANTIC)
    reader = CachedClient(openai, tiers=[url], semantic=SEMANTIC)
    try:
        first = await writer.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "How can I lose weight fast?"}],
        )
        assert len(await asyncio.to_thread(vector_rows, url, table)) == 1
        near = await reader.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "How can I lose weight quickly?"}],
        )
        assert near.cache_match == "semantic"
        assert near.cache_key == first.cache_key
        assert reader._core.semantic._indexes == {}
        assert writer._core.semantic._indexes == {}
    finally:
        await writer.clear_cache()
        await writer.close()
        await reader.close()


async def test_a_sync_tier_served_to_async_clients_keeps_the_capability(
    vector_tier: tuple[str, str],
) -> None:
    from llmcache.backends.base import SyncToAsync
    from llmcache.backends.capabilities import detect
    from llmcache.backends.memory import MemoryBackend

    table, url = vector_tier
    served = SyncToAsync(from_url(url))
    try:
        assert detect(served, is_async=True).vectors
        assert not detect(SyncToAsync(MemoryBackend()), is_async=True).vectors
        assert await served.vectors(DIM) is True  # type: ignore[attr-defined]
        key = "llmcache:default:k~sem~p"
        await served.set(key, b"record", None)
        vector = [1.0] + [0.0] * (DIM - 1)
        await served.put_vectors(DIM, [(key, "s", vector)])  # type: ignore[attr-defined]
        found = await served.search_vectors(DIM, "s", vector, 3, 0.9)  # type: ignore[attr-defined]
        assert found == [(key, 1.0, b"record")]
        await served.delete([key])  # the record goes, and its vector with it
        assert await served.search_vectors(DIM, "s", vector, 3, -1.0) == []  # type: ignore[attr-defined]
        assert vector_rows(url, table) == []
    finally:
        await served.close()
