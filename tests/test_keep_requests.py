"""``keep_requests=True``: entries carry the canonical request that produced them.

The request rides in the entry's header as one more optional field: entries without it
are byte for byte what they were, and entries written before it existed still decode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
from anthropic import Anthropic
from conftest import MODEL, chat
from openai import OpenAI

import llmcache
from llmcache import CachedClient, CacheRequest, ConfigError
from llmcache._rules.canonical import request_of
from llmcache._rules.keys import physical_key
from llmcache._tiers.codec import Codec, CorruptEntry, Entry
from llmcache.tools.inventory import open_store
from llmcache.tools.simulator import Simulator
from tests.serve_fixtures import in_process

REQUEST = {
    "endpoint": "chat.completions",
    "upstream": "https://api.openai.com/v1",
    "params": {"messages": [{"content": "Hi", "role": "user"}], "model": MODEL},
}


def entry(**fields: Any) -> Entry:
    return Entry("llmcache:ns:k", 1.0, None, "response", {"id": "x"}, MODEL, 3, 4, **fields)


def header(data: bytes) -> list[Any]:
    return msgpack.unpackb(data)[2]  # type: ignore[no-any-return]


def test_an_entry_without_a_request_is_written_as_before() -> None:
    assert len(header(Codec().encode(entry()))) == 8
    assert len(header(Codec().encode(entry(cached_tokens=2)))) == 10


def test_a_request_round_trips_as_the_eleventh_header_field() -> None:
    data = Codec().encode(entry(request=REQUEST))
    assert header(data)[8:] == [0, 0, REQUEST]
    decoded = Codec().decode(data, "llmcache:ns:k")
    assert decoded.request == REQUEST
    assert decoded.payload == {"id": "x"}
    assert (decoded.prompt_tokens, decoded.completion_tokens) == (3, 4)


@pytest.mark.parametrize("extra", [[], [5, 1]], ids=["8 fields", "10 fields"])
def test_entries_written_before_requests_were_kept_decode_without_one(extra: list[int]) -> None:
    head = ["llmcache:ns:k", 1.0, None, "response", MODEL, 3, 4, 2, *extra]
    data = msgpack.packb(["llmc", 1, head, {"id": "x"}, b""])
    decoded = Codec().decode(data, "llmcache:ns:k")
    assert decoded.request is None
    assert decoded.cached_tokens == (extra[0] if extra else 0)


def test_a_signed_entry_signs_its_request() -> None:
    codec = Codec(signing_key="secret")
    data = codec.encode(entry(request=REQUEST))
    assert codec.decode(data, "llmcache:ns:k").request == REQUEST
    magic, version, head, body, signature = msgpack.unpackb(data)
    head[10] = {**REQUEST, "endpoint": "embeddings"}
    forged = msgpack.packb([magic, version, head, body, signature])
    with pytest.raises(CorruptEntry, match="signature"):
        codec.decode(forged, "llmcache:ns:k")


def test_a_request_that_is_not_a_map_is_a_corrupt_entry() -> None:
    head = ["llmcache:ns:k", 1.0, None, "response", MODEL, 3, 4, 2, 0, 0, ["not", "a", "map"]]
    data = msgpack.packb(["llmc", 1, head, {"id": "x"}, b""])
    with pytest.raises(CorruptEntry, match="request is a list, not a map"):
        Codec().decode(data, "llmcache:ns:k")


def stored(url: str, namespace: str, key: str) -> Entry:
    tier = open_store(url)
    try:
        data = tier.backend.get(physical_key(namespace, key))
        assert data is not None
        return Codec().decode(data, physical_key(namespace, key))
    finally:
        tier.backend.close()


def test_the_option_is_off_by_default(openai_client: OpenAI, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    client = CachedClient(openai_client, tiers=[url])
    response = client.chat.completions.create(**chat())
    assert stored(url, "default", response.cache_key).request is None


def test_a_client_keeps_the_canonical_request_without_secrets(
    sim: Simulator, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    openai = OpenAI(
        base_url=sim.base_url,
        api_key="sk-test-secret-key",
        organization="org-1",
        max_retries=0,
    )
    client = CachedClient(openai, tiers=[url], keep_requests=True)
    response = client.chat.completions.create(
        **chat(), temperature=0.5, user="u-1", cache_key="user_1"
    )
    request = stored(url, "default", response.cache_key).request
    assert request == {
        "endpoint": "chat.completions",
        "upstream": sim.base_url,
        "organization": "org-1",
        "scope": "user_1",
        "params": {**chat(), "temperature": 0.5},  # user= is not in the key
    }
    assert "sk-" not in repr(request)


def test_a_credential_in_the_upstream_url_is_redacted() -> None:
    call = CacheRequest(
        "chat.completions",
        chat(),
        provider="https://generativelanguage.googleapis.com/v1beta?key=AIza-secret&alt=sse||",
    )
    record = request_of(call)
    assert record["upstream"] == (
        "https://generativelanguage.googleapis.com/v1beta?key=[redacted]&alt=sse"
    )
    assert "AIza" not in repr(record)


def test_a_stream_and_a_hit_promoted_from_below_keep_the_request(
    openai_client: OpenAI, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    writer = CachedClient(openai_client, tiers=[url], keep_requests=True)
    with writer.chat.completions.create(**chat(), stream=True) as stream:
        chunks = list(stream)
    assert chunks
    reader = CachedClient(openai_client, tiers=["memory://", url])  # option off: it only reads
    hit = reader.chat.completions.create(**chat())
    assert hit.cache_tier == "L2:sqlite"
    memory = reader._core.tier_list[0].backend
    promoted = memory.get(physical_key("default", hit.cache_key))
    assert Codec().decode(promoted, physical_key("default", hit.cache_key)).request is not None


def test_each_embedding_input_keeps_its_own_request(openai_client: OpenAI, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    client = CachedClient(openai_client, tiers=[url], namespace="emb", keep_requests=True)
    client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    single = CachedClient(openai_client, tiers=[url], namespace="emb")
    hit = single.embeddings.create(model="text-embedding-3-small", input="beta")
    assert hit.cache_hit
    request = stored(url, "emb", hit.cache_key).request
    assert request is not None
    assert request["params"] == {"input": "beta", "model": "text-embedding-3-small"}


def test_the_http_level_cache_and_anthropic_keep_requests(sim: Simulator, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    http = llmcache.http_client(tiers=[url], keep_requests=True)
    try:
        anthropic = Anthropic(
            base_url=sim.anthropic_base_url, api_key="sk-ant", http_client=http, max_retries=0
        )
        anthropic.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=50,
            messages=[{"role": "user", "content": "Hello"}],
        )
    finally:
        http.close()
        http.cache.close()
    backend = open_store(url).backend
    (line,) = backend.scan("*")
    request = Codec().decode(backend.get(line.key), line.key).request
    backend.close()
    assert request is not None
    assert request["endpoint"] == "messages"
    assert request["upstream"] == sim.anthropic_base_url
    assert request["params"]["messages"] == [{"role": "user", "content": "Hello"}]


async def test_the_proxy_keeps_requests_with_the_option(sim: Simulator) -> None:
    app, client = in_process(sim, keep_requests=True)
    async with client:
        reply = await client.post("/v1/chat/completions", json=chat("Proxied"))
    key = reply.headers["llmcache-key"]
    memory = app.core.tier_list[0].backend.backend
    data = memory.get(physical_key("default", key))
    await app.transport.aclose()
    request = Codec().decode(data, physical_key("default", key)).request
    assert request is not None
    assert request["params"] == chat("Proxied")


def test_the_option_must_be_a_bool(openai_client: OpenAI) -> None:
    with pytest.raises(ConfigError, match="keep_requests must be True or False, not 'yes'"):
        CachedClient(openai_client, keep_requests="yes")
