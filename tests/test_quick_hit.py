"""The quick hit path: a call without options served from the first tier without a plan.

It must serve exactly what the planned path serves, and leave everything else (other key
strategies, options, streams, observers, bad or stale entries, failing tiers) to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import chat
from openai import AsyncOpenAI
from plugins_for_tests import BROKEN, STORES, TestBackends
from test_providers import EchoAnswer, SayAdapter

from llmcache import CachedClient, CacheRequest, KeyStrategy, hookimpl
from llmcache._engine import engine as engine_module
from llmcache._engine.planning import Planner
from llmcache._rules.keys import RequestKeyStrategy, physical_key
from llmcache._tiers.codec import Codec, Entry
from llmcache.providers import Method, Provider
from llmcache.tools.simulator import Simulator


class _NoPlans:
    """Make planning fail: a call served while it is in place never built a plan."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the call was planned")

        monkeypatch.setattr(Planner, "plan", refuse)


@pytest.fixture
def plugin() -> Iterator[TestBackends]:
    BROKEN.clear()
    STORES.clear()
    yield TestBackends()
    BROKEN.clear()
    STORES.clear()


def _marks(response: Any) -> dict[str, Any]:
    return {name: value for name, value in vars(response).items() if name.startswith("cache_")}


def test_a_quick_hit_serves_what_a_planned_hit_serves(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(tiers=["memory://"])
    first = client.chat.completions.create(**chat())
    # cache_ttl takes the planned path to the same entry (options are not in the key)
    planned = client.chat.completions.create(**chat(), cache_ttl=3600)
    _NoPlans(monkeypatch)
    quick = client.chat.completions.create(**chat())
    assert planned.cache_hit
    assert quick.cache_hit
    assert quick.model_dump() == planned.model_dump() == first.model_dump()
    assert type(quick) is type(first)
    assert {k: v for k, v in _marks(quick).items() if k != "cache_age"} == {
        k: v for k, v in _marks(planned).items() if k != "cache_age"
    }
    stats = client.stats()
    assert (stats.hits, stats.misses, stats.errors) == (2, 1, 0)
    assert stats.tokens_saved == 2 * quick.cache_tokens_saved > 0
    assert dict(stats.tier_hits) == {"L1:memory": 2}
    assert stats.cost_saved_usd > 0


def test_a_quick_hit_answers_a_second_level_hit_after_promotion(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'l2.db'}"
    writer = make_client(tiers=[url])
    writer.chat.completions.create(**chat())
    reader = make_client(tiers=["memory://", url])
    promoted = reader.chat.completions.create(**chat())  # L1 misses: planned, from L2
    assert promoted.cache_tier == "L2:sqlite"
    _NoPlans(monkeypatch)
    assert reader.chat.completions.create(**chat()).cache_tier == "L1:memory"


def test_a_miss_read_by_the_quick_path_is_not_read_again(
    make_client: Any, plugin: TestBackends
) -> None:
    client = make_client(tiers=["sharedmem://reads"], plugins=[plugin])
    store = STORES["reads"]
    reads: list[str] = []
    get = store.get

    def counted(key: str) -> Any:
        reads.append(key)
        return get(key)

    store.get = counted  # type: ignore[method-assign]
    assert not client.chat.completions.create(**chat("once")).cache_hit
    assert len(reads) == 1


def test_a_failed_quick_read_is_counted_once(make_client: Any, plugin: TestBackends) -> None:
    client = make_client(tiers=["broken://"], plugins=[plugin])
    answer = client.chat.completions.create(**chat())
    assert not answer.cache_hit
    assert BROKEN[0].calls == 1  # not read again, nor written: it failed in this call
    assert client.stats().errors == 1


def test_an_expired_entry_is_a_miss_on_the_quick_path(make_client: Any) -> None:
    client = make_client(tiers=["memory://"], default_ttl=0.2)
    first = client.chat.completions.create(**chat())
    time.sleep(0.3)
    again = client.chat.completions.create(**chat())
    assert not again.cache_hit
    assert again.cache_key == first.cache_key
    assert client.stats().misses == 2


def test_another_key_strategy_is_never_bypassed(make_client: Any) -> None:
    class OneKey(KeyStrategy):
        def key(self, request: CacheRequest) -> str:
            return "everything"

    client = make_client(tiers=["memory://"], key_strategy=OneKey())
    client.chat.completions.create(**chat("a"))
    other = client.chat.completions.create(**chat("b"))
    assert other.cache_hit
    assert other.cache_key == "everything"


def test_hit_observers_see_every_hit(make_client: Any) -> None:
    seen: list[str] = []

    class Observer:
        @hookimpl
        def llmcache_on_hit(self, event: Any) -> None:
            seen.append(event.key)

    client = make_client(tiers=["memory://"], plugins=[Observer()])
    first = client.chat.completions.create(**chat())
    client.chat.completions.create(**chat())
    client.chat.completions.create(**chat())
    assert seen == [first.cache_key, first.cache_key]


def test_a_stream_is_replayed_by_the_planned_path(make_client: Any) -> None:
    client = make_client(tiers=["memory://"])
    first = client.chat.completions.create(**chat())
    chunks = list(client.chat.completions.create(**chat(), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        first.choices[0].message.content
    )


async def test_an_async_quick_hit_serves_what_a_planned_hit_serves(
    async_openai_client: AsyncOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = CachedClient(async_openai_client, tiers=["memory://"])
    try:
        first = await client.chat.completions.create(**chat())
        planned = await client.chat.completions.create(**chat(), cache_ttl=3600)
        _NoPlans(monkeypatch)
        quick = await client.chat.completions.create(**chat())
        assert quick.cache_hit
        assert planned.cache_hit
        assert quick.model_dump() == first.model_dump()
        assert quick.cache_key == planned.cache_key == first.cache_key
        assert client.stats().hits == 2
    finally:
        await client.close()


# -- NaN told from null only where it can matter ------------------------------------------------


def _entry(client: Any, answer: Any) -> Entry:
    pkey = physical_key(client._namespace, answer.cache_key)
    return Codec().decode(client._tiers.tiers[0].backend.get(pkey), pkey)


class _NoNanWalk:
    """Make the NaN check fail: a call served while it is in place never walked its floats."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the arguments were walked for NaN")

        monkeypatch.setattr(engine_module, "has_non_finite", refuse)


def test_an_entry_says_whether_its_request_holds_null(make_client: Any) -> None:
    client = make_client(tiers=["memory://"])
    assert _entry(client, client.chat.completions.create(**chat("plain"))).null_free
    with_null = client.chat.completions.create(**chat("nulls"), temperature=None)
    assert not _entry(client, with_null).null_free
    scoped = client.chat.completions.create(**chat("scoped"), cache_key="tenant")
    assert not _entry(client, scoped).null_free  # its key is not the digest alone


def test_another_key_strategy_writes_no_null_free_entries(make_client: Any) -> None:
    class Digest(RequestKeyStrategy):  # the same keys, from a strategy of the user's
        pass

    client = make_client(tiers=["memory://"], key_strategy=Digest())
    assert not _entry(client, client.chat.completions.create(**chat())).null_free


def test_a_hit_on_a_null_free_entry_skips_the_nan_check(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(tiers=["memory://"])
    first = client.chat.completions.create(**chat())
    _NoPlans(monkeypatch)
    _NoNanWalk(monkeypatch)
    again = client.chat.completions.create(**chat())
    assert again.cache_hit
    assert again.cache_key == first.cache_key


def test_a_request_with_null_is_still_a_quick_hit(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(tiers=["memory://"])
    first = client.chat.completions.create(**chat(), temperature=None)
    _NoPlans(monkeypatch)
    again = client.chat.completions.create(**chat(), temperature=None)
    assert again.cache_hit
    assert again.cache_key == first.cache_key


@pytest.mark.parametrize("number", [math.nan, math.inf])
def test_a_non_finite_argument_is_never_served_the_answer_of_null(
    make_client: Any, sim: Simulator, number: float
) -> None:
    client = make_client(tiers=["memory://"])
    client.chat.completions.create(**chat(), temperature=None)
    # The quick digest of this call is the entry's key; the call must still go upstream,
    # where the SDK refuses the number (JSON has no NaN), rather than be served.
    with pytest.raises(ValueError, match="JSON"):
        client.chat.completions.create(**chat(), temperature=number)
    assert client.stats().hits == 0
    assert len(sim.requests) == 1


async def test_an_async_non_finite_argument_is_never_served_the_answer_of_null(
    async_openai_client: AsyncOpenAI, sim: Simulator
) -> None:
    client = CachedClient(async_openai_client, tiers=["memory://"])
    try:
        await client.chat.completions.create(**chat(), temperature=None)
        with pytest.raises(ValueError, match="JSON"):
            await client.chat.completions.create(**chat(), temperature=math.nan)
        assert client.stats().hits == 0
        assert (await client.chat.completions.create(**chat(), temperature=None)).cache_hit
    finally:
        await client.close()


class _Weights:
    """An SDK that takes NaN (JSON's limits are the HTTP SDKs', not the cache's)."""

    def __init__(self) -> None:
        self.calls = 0

    def say(self, *, model: str, prompt: str, weight: float | None = None) -> EchoAnswer:
        self.calls += 1
        return EchoAnswer(lines=[f"{prompt} at {weight}"], model=model, used=1)


class _WeightsClient:
    def __init__(self) -> None:
        self.echoes = _Weights()


class _WeightsPlugin:
    @hookimpl
    def llmcache_register_providers(self, register: Any) -> None:
        register(
            Provider(
                "weights",
                {"echo.say": SayAdapter()},
                methods=(Method(("echoes",), "say", "echo.say"),),
                modules=(_WeightsClient.__module__,),
                identify=lambda client: "weights://local",
            )
        )


@pytest.mark.parametrize("first", [math.nan, None])
def test_non_finite_and_null_arguments_never_share_an_answer(first: float | None) -> None:
    sdk = _WeightsClient()
    with CachedClient(sdk, plugins=[_WeightsPlugin()]) as client:
        say = client.echoes.say
        a = say(model="m", prompt="p", weight=first)
        b = say(model="m", prompt="p", weight=None if first is not None else math.nan)
        again = say(model="m", prompt="p", weight=first)
    assert (a.cache_hit, b.cache_hit, again.cache_hit) == (False, False, True)
    assert a.cache_key != b.cache_key
    assert sdk.echoes.calls == 2
