"""``batch_completions``: many requests at once, deduplicated, bounded, in order.

The real OpenAI and Anthropic SDKs talk to the local simulator; upstream concurrency is
observed through the SDK's own HTTP client event hooks.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletion

from llmcache import CachedClient, MissingExtraError
from llmcache.tools.simulator import Simulator

MODEL = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
CHAT = "/v1/chat/completions"


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def answer(result: Any) -> str:
    if isinstance(result, Message):
        return result.content[0].text  # type: ignore[union-attr]
    return result.choices[0].message.content  # type: ignore[no-any-return]


class InFlight:
    """Count upstream requests in flight with the SDK's HTTP client event hooks."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def sent(self, request: Any) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def answered(self, response: Any) -> None:
        with self._lock:
            self.now -= 1

    def http_client(self) -> Any:
        hooks = {"request": [self.sent], "response": [self.answered]}
        return openai.DefaultHttpxClient(event_hooks=hooks)


@pytest.fixture
def claude(sim: Simulator) -> Iterator[Any]:
    client = CachedClient(
        anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sk-ant-test", max_retries=0)
    )
    yield client
    client.close()


@pytest.fixture
async def async_claude(sim: Simulator) -> AsyncIterator[Any]:
    wrapped = anthropic.AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key="sk-ant-test", max_retries=0
    )
    client = CachedClient(wrapped)
    yield client
    await client.close()


# -- results ------------------------------------------------------------------------------


def test_results_come_back_in_request_order(client: Any, sim: Simulator) -> None:
    prompts = [f"question number {i}" for i in range(12)]
    results = client.batch_completions([user(p) for p in prompts], model=MODEL)

    assert [answer(r).split("reply to: ")[1] for r in results] == prompts
    assert all(isinstance(r, ChatCompletion) for r in results)
    assert sim.count(CHAT) == 12


def test_a_message_dict_becomes_a_single_message_request(client: Any, sim: Simulator) -> None:
    client.batch_completions([user("hello")], model=MODEL)

    assert sim.requests[0].body["messages"] == [{"role": "user", "content": "hello"}]
    assert sim.requests[0].body["model"] == MODEL


def test_create_dicts_are_sent_as_given_and_win_over_common_arguments(
    client: Any, sim: Simulator
) -> None:
    items = [
        {"messages": [user("a")], "model": "gpt-4.1-mini", "temperature": 0.5},
        {"messages": [{"role": "system", "content": "Be brief."}, user("b")]},
    ]
    client.batch_completions(items, model=MODEL, temperature=0.0, max_concurrency=1)

    first, second = (r.body for r in sim.requests)
    assert (first["model"], first["temperature"]) == ("gpt-4.1-mini", 0.5)
    assert (second["model"], second["temperature"]) == (MODEL, 0.0)
    assert second["messages"][0] == {"role": "system", "content": "Be brief."}


def test_an_empty_batch_returns_an_empty_list(client: Any, sim: Simulator) -> None:
    assert client.batch_completions([], model=MODEL) == []
    assert sim.count() == 0


# -- deduplication and hits ----------------------------------------------------------------


def test_identical_requests_in_a_batch_reach_the_upstream_once(client: Any, sim: Simulator) -> None:
    items = [user("same"), user("other"), user("same"), user("same")]
    results = client.batch_completions(items, model=MODEL)

    assert sim.count(CHAT) == 2
    assert answer(results[0]) == answer(results[2]) == answer(results[3])
    assert [r.cache_hit for r in results] == [False, False, True, True]
    assert results[2].cache_key == results[0].cache_key
    assert results[2].cache_tier is None
    assert results[2].cache_tokens_saved == results[0].usage.total_tokens


def test_duplicates_are_counted_as_coalesced_hits(client: Any) -> None:
    client.batch_completions([user("same")] * 5, model=MODEL)

    stats = client.stats()
    assert (stats.requests, stats.misses, stats.hits, stats.coalesced) == (5, 1, 4, 4)
    assert stats.hits + stats.misses + stats.bypasses == stats.requests


def test_each_duplicate_is_an_object_of_its_own(client: Any) -> None:
    first, second = client.batch_completions([user("same"), user("same")], model=MODEL)

    assert first is not second
    second.choices[0].message.content = "changed"
    assert answer(first) != "changed"


def test_requests_differing_only_in_cache_options_are_not_merged(
    client: Any, sim: Simulator
) -> None:
    items = [{"messages": [user("q")]}, {"messages": [user("q")], "cache_ttl": 60}]
    client.batch_completions(items, model=MODEL, max_concurrency=1)

    # the second is served by the first's fresh entry, not merged into it
    assert sim.count(CHAT) == 1
    assert client.stats().coalesced == 0


def test_cached_requests_are_served_without_upstream_calls(client: Any, sim: Simulator) -> None:
    client.chat.completions.create(model=MODEL, messages=[user("known")])
    sim.reset()
    results = client.batch_completions([user("known"), user("new")], model=MODEL)

    assert sim.count(CHAT) == 1
    assert [r.cache_hit for r in results] == [True, False]
    assert results[0].cache_tier == "L1:memory"


def test_a_second_identical_batch_is_served_from_the_cache(client: Any, sim: Simulator) -> None:
    items = [user(f"q{i % 3}") for i in range(9)]
    client.batch_completions(items, model=MODEL)
    again = client.batch_completions(items, model=MODEL)

    assert sim.count(CHAT) == 3
    assert all(r.cache_hit for r in again)


def test_common_cache_options_apply_to_every_request(client: Any, sim: Simulator) -> None:
    results = client.batch_completions([user("a"), user("b")], model=MODEL, cache_key="team-1")

    assert all(r.cache_key.startswith("team-1:") for r in results)
    assert all("cache_key" not in r.body for r in sim.requests)


# -- enable_cache=False ---------------------------------------------------------------------


def test_enable_cache_false_sends_every_request_upstream_uncached(
    client: Any, sim: Simulator
) -> None:
    client.chat.completions.create(model=MODEL, messages=[user("same")])
    sim.reset()
    results = client.batch_completions([user("same")] * 3, model=MODEL, enable_cache=False)

    assert sim.count(CHAT) == 3
    assert not any(r.cache_hit for r in results)
    assert client.stats().bypasses == 3
    assert all("cache_control" not in r.body for r in sim.requests)


def test_enable_cache_false_stores_nothing(client: Any, sim: Simulator) -> None:
    client.batch_completions([user("fresh")], model=MODEL, enable_cache=False)
    later = client.chat.completions.create(model=MODEL, messages=[user("fresh")])

    assert later.cache_hit is False
    assert sim.count(CHAT) == 2


def test_enable_cache_false_keeps_anthropics_own_cache_control(claude: Any, sim: Simulator) -> None:
    control = {"type": "ephemeral"}
    claude.batch_completions(
        [user("q")], model=CLAUDE, max_tokens=32, cache_control=control, enable_cache=False
    )

    assert sim.requests[0].body["cache_control"] == control
    assert claude.stats().bypasses == 1


# -- concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 8])
def test_max_concurrency_bounds_the_calls_in_flight(sim: Simulator, limit: int) -> None:
    sim.delay = 0.05
    seen = InFlight()
    wrapped = OpenAI(
        base_url=sim.base_url, api_key="sk-test", max_retries=0, http_client=seen.http_client()
    )
    with CachedClient(wrapped) as client:
        client.batch_completions(
            [user(f"q{i}") for i in range(12)], model=MODEL, max_concurrency=limit
        )

    assert seen.peak == limit
    assert sim.count(CHAT) == 12


def test_duplicates_and_misses_cost_the_time_of_the_unique_misses(sim: Simulator) -> None:
    sim.delay = 0.05
    items = [user(f"q{i % 64}") for i in range(128)]  # 50% duplicates
    wrapped = OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    with CachedClient(wrapped) as client:
        started = time.perf_counter()
        client.batch_completions(items, model=MODEL, max_concurrency=16)
        elapsed = time.perf_counter() - started

    assert sim.count(CHAT) == 64
    ideal = 64 / 16 * 0.05
    assert ideal <= elapsed < 3 * ideal


# -- errors ---------------------------------------------------------------------------------


def test_return_exceptions_puts_the_error_in_place_of_the_result(
    client: Any, sim: Simulator
) -> None:
    sim.fail_next(1, 500)
    results = client.batch_completions(
        [user("a"), user("b"), user("a")], model=MODEL, max_concurrency=1, return_exceptions=True
    )

    assert isinstance(results[0], openai.InternalServerError)
    assert results[2] is results[0]  # a duplicate shares its call's error
    assert answer(results[1]).endswith("reply to: b")


def test_the_first_error_is_raised_and_calls_not_started_are_dropped(
    client: Any, sim: Simulator
) -> None:
    sim.fail_next(1, 500)
    with pytest.raises(openai.InternalServerError):
        client.batch_completions([user("a"), user("b"), user("c")], model=MODEL, max_concurrency=1)

    assert sim.count(CHAT) == 1


def test_calls_in_flight_when_one_fails_finish_and_are_cached(client: Any, sim: Simulator) -> None:
    sim.delay = 0.2  # both calls are in flight before the failure comes back
    sim.fail_next(1, 500)
    with pytest.raises(openai.InternalServerError):
        client.batch_completions([user("a"), user("b")], model=MODEL, max_concurrency=2)
    sim.reset()
    sim.delay = 0.0
    results = client.batch_completions([user("a"), user("b")], model=MODEL)

    assert sim.count(CHAT) == 1  # one answer was cached, the failed one was not
    assert sorted(r.cache_hit for r in results) == [False, True]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("just text", "batch item 1 must be a message dict"),
        ({"content": "no role"}, "batch item 1 is neither a message dict"),
        ({"prompt": "legacy"}, "its keys: prompt"),
        ({"messages": [user("x")], "stream": True}, "batch item 1 asks for stream=True"),
    ],
    ids=["string", "no-role", "prompt-dict", "stream"],
)
def test_a_malformed_item_fails_the_batch_before_any_upstream_call(
    client: Any, sim: Simulator, item: Any, expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        client.batch_completions([user("fine"), item], model=MODEL)
    assert sim.count() == 0


def test_an_item_without_a_model_names_its_index(client: Any, sim: Simulator) -> None:
    with pytest.raises(ValueError, match="batch item 0 names no model"):
        client.batch_completions([user("q")])
    assert sim.count() == 0


def test_a_bad_cache_option_in_an_item_names_its_index(client: Any, sim: Simulator) -> None:
    with pytest.raises(TypeError, match="batch item 2: unknown llmcache option 'cache_tll'"):
        client.batch_completions(
            [user("a"), user("b"), {"messages": [user("c")], "cache_tll": 5}], model=MODEL
        )
    with pytest.raises(ValueError, match=r"batch item 0: .*max-agee"):
        client.batch_completions([user("a")], model=MODEL, cache_control="max-agee=1")
    assert sim.count() == 0


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "8"])
def test_max_concurrency_below_one_or_not_a_whole_number_is_rejected(
    client: Any, sim: Simulator, limit: Any
) -> None:
    with pytest.raises(ValueError, match="max_concurrency must be a whole number >= 1"):
        client.batch_completions([user("q")], model=MODEL, max_concurrency=limit)
    assert sim.count() == 0


def test_requests_must_be_a_list_not_a_single_item(client: Any) -> None:
    with pytest.raises(ValueError, match="not a dict"):
        client.batch_completions(user("q"), model=MODEL)  # type: ignore[arg-type]


# -- progress -------------------------------------------------------------------------------


def test_progress_shows_a_bar_with_hits_and_misses(
    client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client.batch_completions([user("a"), user("a"), user("b")], model=MODEL, progress=True)

    err = capsys.readouterr().err
    assert "llmcache batch" in err
    assert "3/3" in err
    assert "hits=1" in err
    assert "misses=2" in err


def test_progress_without_tqdm_names_the_extra_to_install(
    client: Any, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(MissingExtraError, match=r"llmcache\[progress\]"):
        client.batch_completions([user("q")], model=MODEL, progress=True)
    assert sim.count() == 0


# -- Anthropic and async --------------------------------------------------------------------


def test_anthropic_batch_goes_through_messages_create(claude: Any, sim: Simulator) -> None:
    results = claude.batch_completions(
        [user("a"), user("b"), user("a")], model=CLAUDE, max_tokens=32
    )

    assert all(isinstance(r, Message) for r in results)
    assert sim.count("/v1/messages") == 2
    assert [r.cache_hit for r in results] == [False, False, True]
    assert answer(results[2]) == answer(results[0])


def test_anthropic_items_need_max_tokens(claude: Any, sim: Simulator) -> None:
    with pytest.raises(ValueError, match="batch item 0 has no max_tokens"):
        claude.batch_completions([user("a")], model=CLAUDE)
    assert sim.count() == 0


async def test_async_batch_dedupes_and_keeps_order(
    async_openai_client: AsyncOpenAI, sim: Simulator
) -> None:
    async with CachedClient(async_openai_client) as client:
        items = [user("x"), user("y"), user("x")]
        results = await client.batch_completions(items, model=MODEL)
        stats = client.stats()

    assert [answer(r).split("reply to: ")[1] for r in results] == ["x", "y", "x"]
    assert sim.count(CHAT) == 2
    assert (stats.hits, stats.misses, stats.coalesced) == (1, 2, 1)


@pytest.mark.parametrize("limit", [1, 4])
async def test_async_max_concurrency_bounds_the_calls_in_flight(sim: Simulator, limit: int) -> None:
    sim.delay = 0.05
    seen = InFlight()

    async def sent(request: Any) -> None:
        seen.sent(request)

    async def answered(response: Any) -> None:
        seen.answered(response)

    http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [sent], "response": [answered]})
    wrapped = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0, http_client=http)
    async with CachedClient(wrapped) as client:
        await client.batch_completions(
            [user(f"q{i}") for i in range(10)], model=MODEL, max_concurrency=limit
        )

    assert seen.peak == limit


async def test_async_return_exceptions(async_openai_client: AsyncOpenAI, sim: Simulator) -> None:
    sim.fail_next(1, 500)
    async with CachedClient(async_openai_client) as client:
        results = await client.batch_completions(
            [user("a"), user("b")], model=MODEL, max_concurrency=1, return_exceptions=True
        )
        sim.fail_next(1, 500)
        with pytest.raises(openai.InternalServerError):
            await client.batch_completions([user("c"), user("d")], model=MODEL, max_concurrency=1)

    assert isinstance(results[0], openai.InternalServerError)
    assert answer(results[1]).endswith("reply to: b")
    assert sim.count(CHAT) == 3  # 'd' was never started


async def test_async_anthropic_batch(async_claude: Any, sim: Simulator) -> None:
    results = await async_claude.batch_completions(
        [{"messages": [user("a")], "max_tokens": 16}, user("a")], model=CLAUDE, max_tokens=16
    )

    assert [r.cache_hit for r in results] == [False, True]
    assert sim.count("/v1/messages") == 1
