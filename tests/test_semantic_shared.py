"""Semantic matches across processes through shared tiers, and what other embedders left there."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmcache.semantic.embedders import WordLlamaEmbedder
from llmcache.semantic.index import Member, PartitionIndex
from llmcache.tools.simulator import Simulator
from tests.redis_fixtures import RedisServer, redis_server

__all__ = ["redis_server"]  # a fixture, used by name

SEMANTIC = {"threshold": 0.85, "sync_interval": 0}
MODEL = "gpt-4o-mini"

WRITER = textwrap.dedent(
    """
    import sys
    from openai import OpenAI
    from llmcache import CachedClient
    base_url, tier = sys.argv[1], sys.argv[2]
    client = CachedClient(
        OpenAI(base_url=base_url, api_key="sk-test", max_retries=0),
        tiers=[tier],
        semantic={"threshold": 0.85},
    )
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "How can I lose weight fast?"}]
    )
    print(reply.cache_key)
    client.close()
    """
)


def ask(client: Any, question: str) -> Any:
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question}]
    )


@pytest.fixture(params=["redis", "sqlite"])
def shared_tier(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return f"{server.url}/0"
    return f"sqlite:///{tmp_path / 'cache.db'}"


def test_a_question_stored_by_another_process_is_a_semantic_hit(
    shared_tier: str, sim: Simulator, make_client: Callable[..., Any]
) -> None:
    written = subprocess.run(
        [sys.executable, "-c", WRITER, sim.base_url, shared_tier],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = written.stdout.strip()
    client = make_client(tiers=["memory://", shared_tier], semantic=SEMANTIC, namespace="default")
    near = ask(client, "How can I lose weight quickly?")
    assert near.cache_match == "semantic"
    assert near.cache_key == key
    assert near.cache_tier is not None
    assert near.cache_tier.startswith("L2:")
    assert sim.count("/v1/chat/completions") == 1
    # an answer-changing edit is not served from the other process's question either
    assert ask(client, "How can I gain weight fast?").cache_match is None
    client.clear_cache()


async def test_an_async_client_finds_another_process_s_questions(
    shared_tier: str, sim: Simulator
) -> None:
    from openai import AsyncOpenAI

    from llmcache import CachedClient

    written = subprocess.run(
        [sys.executable, "-c", WRITER, sim.base_url, shared_tier],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    openai = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    client = CachedClient(openai, tiers=[shared_tier], semantic=SEMANTIC)
    try:
        near = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "How can I lose weight quickly?"}]
        )
        assert near.cache_match == "semantic"
        assert near.cache_key == written.stdout.strip()
        await client.clear_cache()
    finally:
        await client.close()


def test_a_cleared_entry_takes_its_vector_along(
    tmp_path: Path, make_client: Callable[..., Any]
) -> None:
    tier = f"sqlite:///{tmp_path / 'cache.db'}"
    writer = make_client(tiers=[tier], semantic=SEMANTIC)
    first = ask(writer, "How can I lose weight fast?")
    assert writer.clear_cache(key=first.cache_key + "*") == 2
    reader = make_client(tiers=[tier], semantic=SEMANTIC)
    assert ask(reader, "How can I lose weight quickly?").cache_match is None


def test_a_vector_whose_entry_is_gone_serves_nothing(
    tmp_path: Path, make_client: Callable[..., Any]
) -> None:
    tier = f"sqlite:///{tmp_path / 'cache.db'}"
    writer = make_client(tiers=[tier], semantic=SEMANTIC)
    first = ask(writer, "How can I lose weight fast?")
    assert writer.clear_cache(key=first.cache_key) == 1  # the entry alone
    reader = make_client(tiers=[tier], semantic=SEMANTIC)
    assert ask(reader, "How can I lose weight quickly?").cache_match is None


class Renamed:
    """The default model under another name: its vectors must not be mixed with the default's."""

    name = "someone-elses-model"
    dim = 256

    def __init__(self) -> None:
        self._model = WordLlamaEmbedder()

    def embed(self, texts: list[str]) -> Any:
        return self._model.embed(texts)


def test_vectors_of_another_embedder_are_ignored_with_one_warning(
    tmp_path: Path, make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    tier = f"sqlite:///{tmp_path / 'cache.db'}"
    writer = make_client(tiers=[tier], semantic={"threshold": 0.85, "embedder": Renamed()})
    ask(writer, "How can I lose weight fast?")
    ask(writer, "What is the best way to learn Python?")
    reader = make_client(tiers=[tier], semantic=SEMANTIC)
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        assert ask(reader, "How can I lose weight quickly?").cache_match is None
        assert ask(reader, "How can I lose weight fast?").cache_match == "exact"
    foreign = [r for r in caplog.records if "someone-elses-model" in r.getMessage()]
    assert len(foreign) == 1
    stats = reader.stats()
    assert stats.semantic_errors == 2
    assert stats.semantic_hits == 0


def test_the_graph_index_finds_what_the_exact_product_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    from llmcache.semantic import index as index_module

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(400, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat = PartitionIndex(32)
    monkeypatch.setattr(index_module, "HNSW_AT", 200)
    graph = PartitionIndex(32)
    for i, v in enumerate(vectors):
        graph.add(Member(f"k{i}", f"q{i}", None), v)
    monkeypatch.setattr(index_module, "HNSW_AT", 10**9)
    for i, v in enumerate(vectors):
        flat.add(Member(f"k{i}", f"q{i}", None), v)
    assert graph._graph is not None
    assert flat._graph is None
    graph.remove("k3")
    flat.remove("k3")
    for probe in (vectors[3], vectors[10], vectors[399]):
        expected = [m.key for _, m in flat.search(probe, 3, 0.0)]
        assert [m.key for _, m in graph.search(probe, 3, 0.0)][:1] == expected[:1]
    assert "k3" not in [m.key for _, m in graph.search(vectors[3], 3, -1.0)]
