"""``PrometheusObserver``: cache events as prometheus-client metrics."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from prometheus_client import CollectorRegistry, generate_latest

import llmcache
from llmcache import CachedClient, ConfigError, MissingExtraError
from llmcache.integrations.prometheus import PrometheusObserver
from llmcache.tools.simulator import Simulator

MODEL = "gpt-4o-mini"
WHERE = {"namespace": "default", "endpoint": "chat.completions"}


def ask(text: str = "What is a cache?") -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}]}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    sample = registry.get_sample_value(name, {**WHERE, **labels})
    return 0.0 if sample is None else sample


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def observed(make_client: Any, registry: CollectorRegistry) -> Any:
    return make_client(plugins=[PrometheusObserver(registry=registry)])


def test_hits_and_misses_are_counted_by_tier(observed: Any, registry: CollectorRegistry) -> None:
    observed.chat.completions.create(**ask())
    observed.chat.completions.create(**ask())
    observed.chat.completions.create(**ask())

    assert value(registry, "llmcache_misses_total") == 1
    assert value(registry, "llmcache_hits_total", tier="L1:memory") == 2
    assert value(registry, "llmcache_stores_total", tier="L1:memory") == 1


def test_tokens_and_dollars_saved_match_the_client_stats(
    observed: Any, registry: CollectorRegistry
) -> None:
    observed.chat.completions.create(**ask())
    observed.chat.completions.create(**ask())

    stats = observed.stats()
    assert stats.tokens_saved > 0
    assert value(registry, "llmcache_tokens_saved_total") == stats.tokens_saved
    assert value(registry, "llmcache_cost_saved_usd_total") == pytest.approx(stats.cost_saved_usd)


def test_latency_histograms_are_kept_per_tier_and_event(
    observed: Any, registry: CollectorRegistry
) -> None:
    observed.chat.completions.create(**ask())
    observed.chat.completions.create(**ask())

    count = "llmcache_latency_seconds_count"
    assert value(registry, count, tier="L1:memory", event="hit") == 1
    assert value(registry, count, tier="none", event="miss") == 1
    assert value(registry, count, tier="L1:memory", event="store") == 1
    assert value(registry, "llmcache_latency_seconds_sum", tier="none", event="miss") > 0


def test_metrics_are_labelled_by_namespace_and_endpoint(
    make_client: Any, registry: CollectorRegistry
) -> None:
    client = make_client(namespace="shop", plugins=[PrometheusObserver(registry=registry)])
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    client.embeddings.create(model="text-embedding-3-small", input="hello")

    labels = {"namespace": "shop", "endpoint": "embeddings"}
    assert registry.get_sample_value("llmcache_misses_total", labels) == 1
    assert registry.get_sample_value("llmcache_hits_total", {**labels, "tier": "L1:memory"}) == 1


def test_coalesced_hits_have_no_tier(observed: Any, registry: CollectorRegistry) -> None:
    observed.batch_completions([{"role": "user", "content": "q"}] * 3, model=MODEL)

    assert value(registry, "llmcache_hits_total", tier="none") == 2
    assert value(registry, "llmcache_misses_total") == 1


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nothing else takes it), never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_tier_errors_are_counted(
    make_client: Any, registry: CollectorRegistry, refusing_port: int
) -> None:
    dead = f"redis://127.0.0.1:{refusing_port}/0?timeout=0.5"
    client = make_client(tiers=["memory://", dead], plugins=[PrometheusObserver(registry=registry)])
    client.chat.completions.create(**ask())
    client.chat.completions.create(**ask("another question"))

    errors = value(registry, "llmcache_errors_total", tier="L2:redis")
    assert errors >= 2
    assert errors == client.stats().errors
    assert value(registry, "llmcache_errors_total", tier="L1:memory") == 0


def test_the_exposition_declares_every_metric(registry: CollectorRegistry) -> None:
    PrometheusObserver(registry=registry)
    text = generate_latest(registry).decode()

    for name, kind in [
        ("llmcache_hits_total", "counter"),
        ("llmcache_misses_total", "counter"),
        ("llmcache_stores_total", "counter"),
        ("llmcache_errors_total", "counter"),
        ("llmcache_tokens_saved_total", "counter"),
        ("llmcache_cost_saved_usd_total", "counter"),
        ("llmcache_latency_seconds", "histogram"),
    ]:
        assert f"# TYPE {name} {kind}" in text


async def test_async_clients_are_observed(
    async_openai_client: AsyncOpenAI, registry: CollectorRegistry
) -> None:
    async with CachedClient(
        async_openai_client, plugins=[PrometheusObserver(registry=registry)]
    ) as client:
        await client.chat.completions.create(**ask())
        await client.chat.completions.create(**ask())

    assert value(registry, "llmcache_hits_total", tier="L1:memory") == 1
    assert value(registry, "llmcache_misses_total") == 1


@pytest.fixture
def process_wide(registry: CollectorRegistry) -> Iterator[PrometheusObserver]:
    observer = PrometheusObserver(registry=registry)
    llmcache.register_plugin(observer)
    try:
        yield observer
    finally:
        llmcache.unregister_plugin(observer)


def test_register_plugin_observes_every_client_of_the_process(
    process_wide: PrometheusObserver, make_client: Any, registry: CollectorRegistry
) -> None:
    one, two = make_client(), make_client(namespace="other")
    one.chat.completions.create(**ask())
    two.chat.completions.create(**ask())

    assert value(registry, "llmcache_misses_total") == 1
    assert (
        registry.get_sample_value(
            "llmcache_misses_total", {"namespace": "other", "endpoint": "chat.completions"}
        )
        == 1
    )


def test_two_observers_on_one_registry_are_refused(registry: CollectorRegistry) -> None:
    PrometheusObserver(registry=registry)
    with pytest.raises(ConfigError, match="one PrometheusObserver per registry"):
        PrometheusObserver(registry=registry)
    PrometheusObserver(registry=registry, prefix="other")  # another prefix is fine


def test_without_prometheus_client_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, sim: Simulator
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtraError, match=r"llmcache\[prometheus\]"):
        PrometheusObserver()
    with pytest.raises(ImportError):
        PrometheusObserver()
