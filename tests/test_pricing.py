"""Prices: the dated built-in table, ``pricing=`` overrides, and dollars in ``stats()``."""

from __future__ import annotations

import datetime
import logging
import math
from typing import Any

import pytest

from llmcache import CachedClient, ConfigError
from llmcache._rules.pricing import DEFAULT_PRICES, PRICES_AS_OF, Price, PriceTable
from llmcache.tools.simulator import Simulator


def ask(model: str, text: str = "What is a cache?") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


# -- the built-in table -------------------------------------------------------------------


def test_the_table_is_dated() -> None:
    assert datetime.date.fromisoformat(PRICES_AS_OF) <= datetime.date.today()


@pytest.mark.parametrize(
    "model",
    [
        "gpt-6.2-sol",
        "gpt-6-luna",
        "gpt-5.6-sol",
        "gpt-5.5",
        "gpt-5.4-mini",
        "gpt-5",
        "gpt-4.1",
        "gpt-4o-mini",
        "o4-mini",
        "text-embedding-3-small",
        "claude-fable-5-1",
        "claude-opus-5-5",
        "claude-sonnet-5-5",
        "claude-haiku-5-5",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
    ],
)
def test_current_openai_and_anthropic_models_have_prices(model: str) -> None:
    assert PriceTable().get(model) is DEFAULT_PRICES[model]


def test_every_built_in_price_is_sane() -> None:
    for model, price in DEFAULT_PRICES.items():
        assert price.input >= 0, model
        assert price.output >= 0, model
        assert price.cached_input is None or 0 <= price.cached_input <= price.input, model


@pytest.mark.parametrize(
    ("model", "listed"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ],
)
def test_a_snapshot_is_priced_as_its_model(model: str, listed: str) -> None:
    assert PriceTable().get(model) is DEFAULT_PRICES[listed]


def test_an_exact_snapshot_entry_wins_over_its_model() -> None:
    assert PriceTable().get("gpt-4o-2024-05-13") == Price(5.00, 15.00)


@pytest.mark.parametrize("model", ["gpt-5.6-terra", "gpt-4o-mini-tts", "claude-opus-4-9", "llama"])
def test_an_unlisted_model_is_not_priced_as_a_similar_name(model: str) -> None:
    assert PriceTable().get(model) is None


def test_cost_is_per_million_tokens() -> None:
    table = PriceTable()
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.15 + 0.60)
    assert table.cost("gpt-4o-mini", 200, 50) == pytest.approx((200 * 0.15 + 50 * 0.60) / 1e6)
    assert table.cost("no-such-model", 200, 50) == 0.0
    assert table.cost(None, 200, 50) == 0.0


def test_cache_discount_is_the_difference_to_the_input_price() -> None:
    assert Price(3.0, 15.0, 0.3).cache_discount(1_000_000) == pytest.approx(2.7)
    assert Price(0.5, 1.5).cache_discount(1_000_000) == 0.0  # no prompt cache price


# -- overrides ------------------------------------------------------------------------------


def test_pricing_adds_a_model() -> None:
    table = PriceTable({"my-model": {"input": 1.0, "output": 2.0, "cached_input": 0.5}})
    assert table.get("my-model") == Price(1.0, 2.0, 0.5)
    assert table.get("my-model-2026-01-01") == Price(1.0, 2.0, 0.5)


def test_pricing_overrides_a_built_in_model_and_cached_input_is_optional() -> None:
    table = PriceTable({"gpt-4o-mini": {"input": 1, "output": 4}})
    assert table.get("gpt-4o-mini") == Price(1.0, 4.0, None)
    assert PriceTable().get("gpt-4o-mini") == DEFAULT_PRICES["gpt-4o-mini"]  # per table


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"input": 1.0}, r"pricing\['m'\]\['output'\] must be a number"),
        ({"input": -1.0, "output": 1.0}, r"pricing\['m'\]\['input'\] must be .* >= 0"),
        ({"input": "1", "output": 1.0}, r"pricing\['m'\]\['input'\] .* not '1'"),
        ({"input": True, "output": 1.0}, r"pricing\['m'\]\['input'\] .* not True"),
        ({"input": math.inf, "output": 1.0}, r"pricing\['m'\]\['input'\] must be finite"),
        ({"input": 1.0, "output": math.nan}, r"pricing\['m'\]\['output'\]"),
        ({"input": 1.0, "output": 1.0, "cahced_input": 0.5}, r"unknown field 'cahced_input'"),
        ({"input": 1.0, "output": 2.0, "cached_input": 1.5}, r"\['cached_input'\] \(1.5\)"),
        (1.5, r"pricing\['m'\] must be a mapping"),
    ],
    ids=[
        "missing",
        "negative",
        "string",
        "bool",
        "infinite",
        "nan",
        "unknown-field",
        "cached-above-input",
        "not-a-mapping",
    ],
)
def test_a_malformed_entry_names_the_model_and_field(entry: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PriceTable({"m": entry})


def test_pricing_must_be_a_mapping_of_model_names() -> None:
    with pytest.raises(ConfigError, match="pricing must be a mapping"):
        PriceTable([("m", {"input": 1, "output": 1})])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model names, not 3"):
        PriceTable({3: {"input": 1, "output": 1}})  # type: ignore[dict-item]


def test_a_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="pricing"):
        PriceTable({"m": {"input": -1, "output": 1}})


def test_a_client_with_malformed_pricing_fails_at_construction(
    openai_client: Any, sim: Simulator
) -> None:
    with pytest.raises(ConfigError, match=r"pricing\['gpt-x'\]\['output'\]"):
        CachedClient(openai_client, pricing={"gpt-x": {"input": 1.0, "output": -2}})
    assert sim.count() == 0


# -- dollars in stats() ---------------------------------------------------------------------


def test_a_hit_saves_the_price_of_the_call_it_replaced(client: Any) -> None:
    first = client.chat.completions.create(**ask("gpt-4o-mini"))
    client.chat.completions.create(**ask("gpt-4o-mini"))

    usage = first.usage
    expected = (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.60) / 1e6
    stats = client.stats()
    assert stats.cost_saved_usd == pytest.approx(expected)
    assert stats.tokens_saved == usage.total_tokens


def test_overridden_prices_are_used_for_savings(make_client: Any) -> None:
    client = make_client(pricing={"house-model": {"input": 10.0, "output": 20.0}})
    first = client.chat.completions.create(**ask("house-model"))
    client.chat.completions.create(**ask("house-model"))

    usage = first.usage
    expected = (usage.prompt_tokens * 10 + usage.completion_tokens * 20) / 1e6
    assert client.stats().cost_saved_usd == pytest.approx(expected)


def test_an_unpriced_model_counts_tokens_but_no_dollars_and_says_so_once(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        for _ in range(3):
            client.chat.completions.create(**ask("sim-unknown-model"))

    stats = client.stats()
    assert stats.hits == 2
    assert stats.tokens_saved > 0
    assert stats.cost_saved_usd == 0.0
    warnings = [r for r in caplog.records if "sim-unknown-model" in r.getMessage()]
    assert len(warnings) == 1
    assert "tokens are counted, dollars are not" in warnings[0].getMessage()


def test_a_hit_prices_provider_cached_prompt_tokens_at_the_cached_price(
    client: Any, openai_client: Any
) -> None:
    request = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You answer questions about caches. " * 40},
            {"role": "user", "content": "What is a cache?"},
        ],
    }
    openai_client.chat.completions.create(**request)  # the provider's prompt cache warms
    first = client.chat.completions.create(**request)
    client.chat.completions.create(**request)

    usage = first.usage
    cached = usage.prompt_tokens_details.cached_tokens
    assert cached > 0
    paid = (usage.prompt_tokens - cached) * 0.15 + cached * 0.075 + usage.completion_tokens * 0.6
    full = usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.6
    saved = client.stats().cost_saved_usd
    assert saved == pytest.approx(paid / 1e6)
    assert saved < full / 1e6  # a hit never saves more than the call cost


def test_a_hit_prices_anthropic_cache_writes_and_reads_at_their_prices(sim: Simulator) -> None:
    import anthropic

    sdk = anthropic.Anthropic(api_key="k", base_url=sim.anthropic_base_url, max_retries=0)
    system = [{"type": "text", "text": "Rules. " * 300, "cache_control": {"type": "ephemeral"}}]
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 64, "system": system}
    with CachedClient(sdk) as client:
        first = client.messages.create(**ask, messages=[{"role": "user", "content": "one"}])
        client.messages.create(**ask, messages=[{"role": "user", "content": "one"}])
        written_usd = client.stats().cost_saved_usd
        second = client.messages.create(**ask, messages=[{"role": "user", "content": "two"}])
        client.messages.create(**ask, messages=[{"role": "user", "content": "two"}])
        read_usd = client.stats().cost_saved_usd - written_usd

    def paid(usage: Any, cached_price: float) -> float:
        plain = usage.input_tokens * 3.0 + usage.output_tokens * 15.0
        cached = usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        return (plain + cached * cached_price) / 1e6

    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens > 0
    assert written_usd == pytest.approx(paid(first.usage, 3.75))
    assert read_usd == pytest.approx(paid(second.usage, 0.30))


def test_dollars_are_rounded_to_a_billionth(make_client: Any) -> None:
    client = make_client(pricing={"odd-model": {"input": 0.1, "output": 0.2}})
    for _ in range(4):
        client.chat.completions.create(**ask("odd-model"))
    saved = client.stats().cost_saved_usd
    assert saved == round(saved, 9)
    assert len(repr(saved)) < 12  # no float noise such as 1.3499999999999998e-05


def test_a_cache_write_price_can_be_given() -> None:
    table = PriceTable({"m": {"input": 1.0, "output": 2.0, "cache_write": 1.25}})
    assert table.cost("m", 1_000_000, 0, 0, 1_000_000) == pytest.approx(1.25)
    assert table.cost("m", 1_000_000, 0, 0, 0) == pytest.approx(1.0)
