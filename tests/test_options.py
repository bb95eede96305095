"""Per-call cache options: strict parsing, directives, TTL precedence."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest
from conftest import chat

from llmcache import NEVER, CacheMiss, ConfigError
from llmcache.tools.simulator import Simulator


class NeverPolicy:
    def ttl(self, request: Any) -> Any:
        return NEVER


class RecordingPolicy:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def ttl(self, request: Any) -> float | None:
        return self.seconds


def test_unknown_cache_keyword_is_a_type_error_before_upstream(client: Any, sim: Simulator) -> None:
    with pytest.raises(TypeError, match=r"'cache_tll'.*cache_control, cache_ttl"):
        client.chat.completions.create(**chat(), cache_tll=5)
    assert sim.count() == 0


@pytest.mark.parametrize(
    ("control", "named"),
    [
        ("max-age", "max-age"),
        ("max-age=-1", "max-age"),
        ("no-cache=1", "no-cache"),
        ("private", "private"),
    ],
    ids=["no-value", "negative", "flag-with-value", "unknown"],
)
def test_malformed_cache_control_names_the_directive(
    client: Any, sim: Simulator, control: str, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        client.chat.completions.create(**chat(), cache_control=control)
    assert sim.count() == 0


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("cache_ttl", -1, "cache_ttl"),
        ("cache_ttl", "soon", "forever"),
        ("cache_strategy", "nearby", "local, distributed, tiered"),
        ("cache_tier", 0, "cache_tier"),
        ("cache_tier", 2, "1 tier"),
        ("cache_key", "", "cache_key"),
        ("cache_prompt", "yes", "cache_prompt"),
    ],
)
def test_bad_option_values_are_value_errors(
    client: Any, sim: Simulator, option: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        client.chat.completions.create(**chat(), **{option: value})
    assert sim.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key_strategy": "per_user"}, "unknown key strategy 'per_user'; known: request, explicit"),
        ({"ttl_policy": "smart"}, "unknown TTL policy 'smart'; known: fixed, intent"),
        ({"tiers": ["bogus://x"]}, "unknown cache URL scheme 'bogus'; known: .*memory"),
        ({"namespace": "a:b"}, "namespace"),
        ({"tiers": "memory://"}, "list of URLs"),
    ],
    ids=["strategy", "policy", "scheme", "namespace", "tiers-string"],
)
def test_bad_client_configuration_is_a_config_error(
    make_client: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_client(**kwargs)


def test_cache_key_scopes_the_entry(client: Any) -> None:
    a = client.chat.completions.create(**chat(), cache_key="user_1")
    b = client.chat.completions.create(**chat(), cache_key="user_2")
    assert not b.cache_hit
    assert a.cache_key.startswith("user_1:v1-")
    assert client.chat.completions.create(**chat(), cache_key="user_1").cache_hit


def test_explicit_strategy_uses_cache_key_exactly(make_client: Any, sim: Simulator) -> None:
    client = make_client(key_strategy="explicit")
    first = client.chat.completions.create(**chat("one"), cache_key="faq:shipping")
    other_prompt = client.chat.completions.create(**chat("two"), cache_key="faq:shipping")
    assert first.cache_key == "faq:shipping"
    assert other_prompt.cache_hit
    with pytest.raises(ConfigError, match="cache_key"):
        client.chat.completions.create(**chat())
    assert sim.count() == 1


def test_strategy_and_policy_objects_can_be_passed_directly(
    make_client: Any, sim: Simulator
) -> None:
    class FirstWord:
        def key(self, request: Any) -> str:
            return request.params["messages"][-1]["content"].split()[0]

    client = make_client(key_strategy=FirstWord(), ttl_policy=RecordingPolicy(60))
    client.chat.completions.create(**chat("hello world"))
    hit = client.chat.completions.create(**chat("hello there"))
    assert hit.cache_hit
    assert hit.cache_key == "hello"


def test_no_store_neither_reads_nor_writes(client: Any, sim: Simulator) -> None:
    client.chat.completions.create(**chat())
    bypass = client.chat.completions.create(**chat(), cache_control="no-store")
    assert not bypass.cache_hit
    assert sim.count() == 2
    assert client.stats().bypasses == 1


def test_no_cache_skips_the_read_and_refreshes_the_entry(client: Any, sim: Simulator) -> None:
    client.chat.completions.create(**chat())
    refreshed = client.chat.completions.create(**chat(), cache_control="no-cache")
    assert not refreshed.cache_hit
    assert sim.count() == 2
    hit = client.chat.completions.create(**chat())
    assert hit.cache_age < 1


def test_only_if_cached_raises_cache_miss_without_upstream(client: Any, sim: Simulator) -> None:
    with pytest.raises(CacheMiss):
        client.chat.completions.create(**chat(), cache_control="only-if-cached")
    assert sim.count() == 0
    client.chat.completions.create(**chat())
    assert client.chat.completions.create(**chat(), cache_control="only-if-cached").cache_hit


def test_max_age_rejects_older_entries(client: Any, sim: Simulator) -> None:
    client.chat.completions.create(**chat())
    time.sleep(1.1)
    assert not client.chat.completions.create(**chat(), cache_control="max-age=1").cache_hit
    assert client.chat.completions.create(**chat(), cache_control="max-age=60").cache_hit


def test_cache_ttl_zero_does_not_store(client: Any, sim: Simulator) -> None:
    client.chat.completions.create(**chat(), cache_ttl=0)
    assert not client.chat.completions.create(**chat()).cache_hit


def test_entry_expires_after_its_ttl(client: Any) -> None:
    client.chat.completions.create(**chat(), cache_ttl=1)
    assert client.chat.completions.create(**chat()).cache_hit
    time.sleep(1.2)
    assert not client.chat.completions.create(**chat()).cache_hit


def test_cache_ttl_forever_overrides_the_default(make_client: Any) -> None:
    client = make_client(default_ttl=1)
    client.chat.completions.create(**chat(), cache_ttl="forever")
    time.sleep(1.2)
    assert client.chat.completions.create(**chat()).cache_hit


def test_precedence_cache_control_over_cache_ttl_over_policy_over_default(
    make_client: Any,
) -> None:
    client = make_client(default_ttl=1000, ttl_policy=RecordingPolicy(1))
    client.chat.completions.create(**chat("policy"))
    client.chat.completions.create(**chat("ttl"), cache_ttl=1)
    client.chat.completions.create(**chat("control"), cache_ttl=1, cache_control="max-age=100")
    time.sleep(1.2)
    assert not client.chat.completions.create(**chat("policy")).cache_hit
    assert not client.chat.completions.create(**chat("ttl")).cache_hit
    assert client.chat.completions.create(**chat("control")).cache_hit


def test_policy_never_bypasses_unless_an_explicit_option_is_given(
    make_client: Any, sim: Simulator
) -> None:
    client = make_client(ttl_policy=NeverPolicy())
    client.chat.completions.create(**chat())
    assert not client.chat.completions.create(**chat()).cache_hit
    assert client.stats().bypasses == 2
    client.chat.completions.create(**chat(), cache_ttl=60)
    assert client.chat.completions.create(**chat(), cache_ttl=60).cache_hit


def test_stale_if_error_serves_a_recently_expired_entry(client: Any, sim: Simulator) -> None:
    client.chat.completions.create(**chat(), cache_ttl=1, cache_control="stale-if-error=60")
    time.sleep(1.2)
    sim.fail_next(1)
    stale = client.chat.completions.create(**chat(), cache_control="stale-if-error=60")
    assert stale.cache_hit
    sim.fail_next(1)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**chat(), cache_control="stale-if-error=0")


def test_stale_while_revalidate_serves_stale_and_refreshes_once(
    client: Any, sim: Simulator
) -> None:
    directive = "stale-while-revalidate=60"
    client.chat.completions.create(**chat(), cache_ttl=1, cache_control=directive)
    time.sleep(1.2)
    sim.reset()
    sim.delay = 0.3
    stale = [client.chat.completions.create(**chat(), cache_control=directive) for _ in range(3)]
    assert all(s.cache_hit for s in stale)
    assert all(s.cache_age > 1 for s in stale)
    deadline = time.monotonic() + 5
    while sim.count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert sim.count() == 1
    fresh = client.chat.completions.create(**chat())
    assert fresh.cache_hit
    assert fresh.cache_age < 1
