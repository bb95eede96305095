"""The HTTP-level cache: ``OpenAI(http_client=llmcache.http_client(...))`` and its transports."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from conftest import MODEL, chat
from openai import AsyncOpenAI, OpenAI

import llmcache
from llmcache import CachedClient, CacheTransport, hookimpl
from llmcache.tools.simulator import Simulator

KEY = "sk-test-secret-key"


@pytest.fixture
def http(sim: Simulator) -> Iterator[Any]:
    client = llmcache.http_client(tiers=["memory://"])
    yield client
    client.close()


@pytest.fixture
def oai(sim: Simulator, http: Any) -> OpenAI:
    return OpenAI(api_key=KEY, base_url=sim.base_url, http_client=http, max_retries=0)


def test_a_repeated_call_is_a_hit_with_outcome_headers(oai: OpenAI, sim: Simulator) -> None:
    first = oai.chat.completions.with_raw_response.create(**chat())
    second = oai.chat.completions.with_raw_response.create(**chat())
    assert first.headers["llmcache-status"] == "miss"
    assert second.headers["llmcache-status"] == "hit"
    assert second.headers["age"] == "0"
    assert second.headers["llmcache-tier"] == "L1:memory"
    assert second.headers["llmcache-key"] == first.headers["llmcache-key"]
    assert second.parse().model_dump() == first.parse().model_dump()
    assert sim.count() == 1
    stats = oai._client.cache.stats()  # type: ignore[attr-defined]
    assert (stats.requests, stats.hits, stats.misses) == (2, 1, 1)
    assert stats.tokens_saved == first.parse().usage.total_tokens  # type: ignore[union-attr]


def test_the_client_is_a_genuine_openai_client(oai: OpenAI) -> None:
    assert type(oai) is OpenAI
    assert isinstance(oai._client, httpx2.Client)


def test_sdk_helpers_options_and_copies_are_cached(oai: OpenAI, sim: Simulator) -> None:
    oai.chat.completions.create(**chat())
    assert oai.chat.completions.parse(**chat()).choices[0].message.content
    with oai.chat.completions.stream(**chat()) as stream:
        assert stream.get_final_completion().choices[0].message.content
    with oai.with_streaming_response.chat.completions.create(**chat()) as raw:
        assert raw.headers["llmcache-status"] == "hit"
    assert oai.with_options(max_retries=3).chat.completions.create(**chat()).choices
    assert oai.copy(timeout=30).chat.completions.create(**chat()).choices
    assert oai.beta.chat.completions.parse(**chat()).choices
    assert sim.count() == 1
    assert oai._client.cache.stats().hits == 6  # type: ignore[attr-defined]


def test_responses_parse_and_stream_are_cached(oai: OpenAI, sim: Simulator) -> None:
    first = oai.responses.create(model=MODEL, input="What is a cache?")
    parsed = oai.responses.parse(model=MODEL, input="What is a cache?")
    with oai.responses.stream(model=MODEL, input="What is a cache?") as stream:
        final = stream.get_final_response()
    assert parsed.output_text == final.output_text == first.output_text
    assert sim.count() == 1


def test_a_streamed_miss_is_stored_and_replayed_as_events(oai: OpenAI, sim: Simulator) -> None:
    live = list(oai.chat.completions.create(**chat(), stream=True))
    replayed = list(oai.chat.completions.create(**chat(), stream=True))
    whole = oai.chat.completions.create(**chat())

    def text(chunks: list[Any]) -> str:
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert text(replayed) == text(live) == whole.choices[0].message.content
    assert sim.count() == 1


def test_an_abandoned_stream_is_never_stored(oai: OpenAI, sim: Simulator) -> None:
    sim.delay = 0.2  # the events arrive one by one
    stream = oai.chat.completions.create(**chat(), stream=True)
    next(iter(stream))
    stream.close()
    sim.delay = 0.0
    oai.chat.completions.create(**chat())
    assert sim.count() == 2


def test_embeddings_are_cached_per_input(oai: OpenAI, sim: Simulator) -> None:
    oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    both = oai.embeddings.create(model="text-embedding-3-small", input=["b", "c"])
    assert len(both.data) == 2
    assert sim.count() == 2
    assert sim.requests[-1].body["input"] == ["c"]  # only the missing input went upstream
    again = oai.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["c", "a"]
    )
    assert again.headers["llmcache-status"] == "hit"
    assert sim.count() == 2


def test_control_headers_are_consumed_and_obeyed(oai: OpenAI, sim: Simulator) -> None:
    headers = {"Cache-Control": "no-store", "llmcache-ttl": "60", "llmcache-key": "user_1"}
    first = oai.chat.completions.with_raw_response.create(**chat(), extra_headers=headers)
    assert first.headers["llmcache-status"] == "bypass"
    sent = sim.requests[-1].headers
    assert not {"cache-control", "llmcache-ttl", "llmcache-key"} & set(sent)
    scoped = {"llmcache-key": "user_1", "llmcache-ttl": "forever"}
    oai.chat.completions.create(**chat(), extra_headers=scoped)
    hit = oai.chat.completions.with_raw_response.create(**chat(), extra_headers=scoped)
    assert hit.headers["llmcache-status"] == "hit"
    assert hit.headers["llmcache-key"].startswith("user_1:")
    assert sim.count() == 2


def test_only_if_cached_misses_with_504_and_no_upstream_call(oai: OpenAI, sim: Simulator) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(**chat(), extra_headers={"Cache-Control": "only-if-cached"})
    assert caught.value.status_code == 504
    assert sim.count() == 0


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Cache-Control", "max-age=soon"),
        ("Cache-Control", "private"),
        ("llmcache-ttl", "tomorrow"),
        ("llmcache-tier", "first"),
        ("llmcache-tier", "7"),
        ("llmcache-strategy", "everywhere"),
    ],
)
def test_a_malformed_control_header_fails_before_any_upstream_call(
    oai: OpenAI, sim: Simulator, header: str, value: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(**chat(), extra_headers={header: value})
    assert header.lower() in str(caught.value).lower()
    assert sim.count() == 0


def test_upstream_errors_are_passed_through_and_never_stored(oai: OpenAI, sim: Simulator) -> None:
    sim.fail_next(1, status=500)
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(**chat())
    assert oai.chat.completions.with_raw_response.create(**chat()).headers["llmcache-status"] == (
        "miss"
    )
    assert sim.count() == 2


def test_stale_if_error_serves_the_stale_entry_marked_stale(oai: OpenAI, sim: Simulator) -> None:
    control = {"Cache-Control": "max-age=1, stale-if-error=600"}
    oai.chat.completions.create(**chat(), extra_headers=control)
    time.sleep(1.1)
    sim.fail_next(1, status=500)
    stale = oai.chat.completions.with_raw_response.create(**chat(), extra_headers=control)
    assert stale.headers["llmcache-status"] == "stale"
    assert stale.parse().choices[0].message.content


def test_other_paths_and_bodies_pass_through_untouched(
    http: Any, oai: OpenAI, sim: Simulator
) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.models.list()
    assert sim.requests[-1].path.endswith("/models")
    response = http.post(sim.base_url + "/chat/completions", content=b"not json")
    assert response.status_code == 400  # the simulator's own answer, not the cache's
    assert "llmcache-status" not in response.headers
    assert oai._client.cache.stats().requests == 0  # type: ignore[attr-defined]


def test_two_upstreams_and_two_projects_never_share_entries(http: Any, sim: Simulator) -> None:
    plain = OpenAI(api_key=KEY, base_url=sim.base_url, http_client=http, max_retries=0)
    other = OpenAI(api_key=KEY, base_url=sim.base_url + "/", http_client=http, project="p2")
    prefixed = OpenAI(api_key=KEY, base_url=sim.base_url.replace("/v1", "/v2"), http_client=http)
    plain.chat.completions.create(**chat())
    other.chat.completions.create(**chat())
    assert sim.count() == 2
    with pytest.raises(openai.NotFoundError):
        prefixed.chat.completions.create(**chat())  # another path prefix: another upstream
    assert sim.count() == 3


def test_entries_are_shared_with_cached_client_both_ways(sim: Simulator, tmp_path: Path) -> None:
    tier = [f"sqlite:///{tmp_path / 'shared.db'}"]
    sdk = OpenAI(api_key=KEY, base_url=sim.base_url, max_retries=0)
    with CachedClient(sdk, tiers=tier) as wrapped:
        wrapped.chat.completions.create(**chat("first"))
    with llmcache.http_client(tiers=tier) as http:
        through = OpenAI(api_key=KEY, base_url=sim.base_url, http_client=http, max_retries=0)
        raw = through.chat.completions.with_raw_response.create(**chat("first"))
        assert raw.headers["llmcache-status"] == "hit"
        through.chat.completions.create(**chat("second"))
    with CachedClient(sdk, tiers=tier) as wrapped:
        assert wrapped.chat.completions.create(**chat("second")).cache_hit
    assert sim.count() == 2


def test_identical_calls_in_flight_reach_the_upstream_once(oai: OpenAI, sim: Simulator) -> None:
    sim.delay = 0.3
    results: list[str] = []

    def ask() -> None:
        raw = oai.chat.completions.with_raw_response.create(**chat())
        results.append(raw.headers["llmcache-status"])

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sim.count() == 1
    assert sorted(results) == ["hit", "hit", "hit", "miss"]
    assert oai._client.cache.stats().coalesced == 3  # type: ignore[attr-defined]


def test_api_keys_never_reach_the_store_or_the_logs(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "c.db"
    caplog.set_level(logging.DEBUG)
    with llmcache.http_client(tiers=["memory://", f"sqlite:///{db}"]) as http:
        client = OpenAI(api_key=KEY, base_url=sim.base_url, http_client=http, max_retries=0)
        client.chat.completions.create(**chat())
        client.chat.completions.create(**chat(), stream=True).close()
        claude = anthropic.Anthropic(
            api_key=KEY, base_url=sim.anthropic_base_url, http_client=http, max_retries=0
        )
        claude.messages.create(model="claude-x", max_tokens=64, messages=chat()["messages"])
    assert KEY.encode() not in db.read_bytes()
    assert KEY not in caplog.text


def test_a_failing_tier_is_skipped(sim: Simulator) -> None:
    with llmcache.http_client(tiers=["redis://127.0.0.1:9/0"], backend_timeout=0.2) as http:
        client = OpenAI(api_key=KEY, base_url=sim.base_url, http_client=http, max_retries=0)
        assert client.chat.completions.create(**chat()).choices
        assert client.chat.completions.create(**chat()).choices
        assert http.cache.stats().errors >= 1
    assert sim.count() == 2


def test_observers_see_http_calls(sim: Simulator) -> None:
    seen: list[str] = []

    class Observer:
        @hookimpl
        def llmcache_on_hit(self, event: Any) -> None:
            seen.append(f"hit {event.tier}")

        @hookimpl
        def llmcache_on_miss(self, event: Any) -> None:
            seen.append("miss")

    with llmcache.http_client(plugins=[Observer()]) as http:
        client = OpenAI(api_key=KEY, base_url=sim.base_url, http_client=http, max_retries=0)
        client.chat.completions.create(**chat())
        client.chat.completions.create(**chat())
    assert seen == ["miss", "hit L1:memory"]


def test_anthropic_messages_and_streams_are_cached(sim: Simulator) -> None:
    with llmcache.http_client() as http:
        claude = anthropic.Anthropic(
            api_key=KEY, base_url=sim.anthropic_base_url, http_client=http, max_retries=0
        )
        ask = {"model": "claude-x", "max_tokens": 64, "messages": chat()["messages"]}
        first = claude.messages.create(**ask)
        with claude.messages.stream(**ask) as stream:
            assert stream.get_final_text() == first.content[0].text  # type: ignore[union-attr]
        raw = claude.messages.with_raw_response.create(**ask)
        assert raw.headers["llmcache-status"] == "hit"
    assert sim.count() == 1


async def test_async_client_hits_streams_and_coalesces(sim: Simulator) -> None:
    async with llmcache.async_http_client() as http:
        client = AsyncOpenAI(api_key=KEY, base_url=sim.base_url, http_client=http, max_retries=0)
        await client.chat.completions.create(**chat())
        raw = await client.chat.completions.with_raw_response.create(**chat())
        assert raw.headers["llmcache-status"] == "hit"
        chunks = [c async for c in await client.chat.completions.create(**chat(), stream=True)]
        assert chunks
        sim.delay = 0.2
        await asyncio.gather(*(client.chat.completions.create(**chat("x")) for _ in range(3)))
        await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        await client.embeddings.create(model="text-embedding-3-small", input=["b"])
        assert await http.cache.clear_cache() > 0
        stats = http.cache.stats()
    assert sim.count() == 3
    assert stats.coalesced == 2


def test_a_transport_the_user_configured_is_wrapped(sim: Simulator) -> None:
    inner = httpx2.HTTPTransport(retries=1)
    with CacheTransport(inner, tiers=["memory://"]) as transport:
        http = httpx2.Client(transport=transport)
        body = json.dumps(chat() | {"model": MODEL}).encode()
        first = http.post(sim.base_url + "/chat/completions", content=body)
        second = http.post(sim.base_url + "/chat/completions", content=body)
        assert first.headers["llmcache-status"] == "miss"
        assert second.headers["llmcache-status"] == "hit"
        assert second.json() == first.json()
    assert sim.count() == 1


def test_httpx_is_served_too(sim: Simulator) -> None:
    import httpx

    with llmcache.http_client(library="httpx") as http:
        assert isinstance(http, httpx.Client)
        body = chat() | {"model": MODEL}
        first = http.post(sim.base_url + "/chat/completions", json=body)
        second = http.post(sim.base_url + "/chat/completions", json=body)
        assert second.headers["llmcache-status"] == "hit"
        assert second.json() == first.json()
        with http.stream("POST", sim.base_url + "/chat/completions", json=body | {"n": 2}) as r:
            r.read()
    assert sim.count() == 2


def test_an_unknown_library_is_a_config_error() -> None:
    with pytest.raises(llmcache.ConfigError, match="known: httpx2, httpx"):
        llmcache.http_client(library="requests")
