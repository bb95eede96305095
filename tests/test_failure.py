"""Fail-open tiers, the circuit breaker, bad entries and signing."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from conftest import chat
from plugins_for_tests import BROKEN, STORES, TestBackends

from llmcache import BackendError
from llmcache._rules.keys import physical_key
from llmcache.tools.simulator import Simulator


@pytest.fixture
def plugin() -> Iterator[TestBackends]:
    BROKEN.clear()
    STORES.clear()
    yield TestBackends()
    BROKEN.clear()
    STORES.clear()


def test_a_dead_tier_never_fails_the_call(
    make_client: Any, plugin: TestBackends, sim: Simulator
) -> None:
    client = make_client(tiers=["memory://", "broken://"], plugins=[plugin])
    first = client.chat.completions.create(**chat())
    second = client.chat.completions.create(**chat())
    assert not first.cache_hit
    assert second.cache_hit
    assert second.cache_tier == "L1:memory"
    assert client.stats().errors >= 1


def test_circuit_breaker_stops_calling_a_dead_tier(make_client: Any, plugin: TestBackends) -> None:
    client = make_client(
        tiers=["broken://"], plugins=[plugin], failure_threshold=3, recovery_time=0.5
    )
    for n in range(10):
        client.chat.completions.create(**chat(str(n)))
    backend = BROKEN[0]
    assert backend.calls == 3  # opened after three failures; later calls skip the tier
    assert client.stats().errors == 3
    time.sleep(0.6)
    client.chat.completions.create(**chat("after"))
    assert backend.calls == 4  # one trial call when half-open, which fails and re-opens


def test_fail_open_false_raises_backend_error(
    make_client: Any, plugin: TestBackends, sim: Simulator
) -> None:
    client = make_client(tiers=["broken://"], plugins=[plugin], fail_open=False)
    with pytest.raises(BackendError, match="L1:broken") as info:
        client.chat.completions.create(**chat())
    assert isinstance(info.value.__cause__, ConnectionError)


def test_failures_are_logged_without_secrets(
    make_client: Any, plugin: TestBackends, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(tiers=["broken://user:hunter2@host/0"], plugins=[plugin])
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        client.chat.completions.create(**chat())
    assert "L1:broken" in caplog.text
    assert "hunter2" not in caplog.text
    assert "hunter2" not in repr(client)


@pytest.mark.parametrize(
    "corrupt",
    [
        b"\x00garbage\xff",
        msgpack.packb(["llmc", 1, ["k"]])[:-3],
        msgpack.packb(["llmc", 99, [], b"", b""]),
        msgpack.packb({"not": "an entry"}),
    ],
    ids=["garbage", "truncated", "wrong-version", "wrong-shape"],
)
def test_bad_bytes_are_a_counted_miss_and_removed(
    make_client: Any, plugin: TestBackends, sim: Simulator, corrupt: bytes
) -> None:
    client = make_client(tiers=["sharedmem://s"], plugins=[plugin])
    first = client.chat.completions.create(**chat())
    STORES["s"].set(physical_key("default", first.cache_key), corrupt, None)
    again = client.chat.completions.create(**chat())
    assert not again.cache_hit
    assert client.stats().errors == 1
    assert client.chat.completions.create(**chat()).cache_hit


def test_entry_copied_under_another_key_is_rejected(
    make_client: Any, plugin: TestBackends, sim: Simulator
) -> None:
    client = make_client(tiers=["sharedmem://s"], plugins=[plugin])
    a = client.chat.completions.create(**chat("a"))
    b = client.chat.completions.create(**chat("b"))
    store = STORES["s"]
    forged = store.get(physical_key("default", a.cache_key))
    assert forged is not None
    store.set(physical_key("default", b.cache_key), forged, None)
    answer = client.chat.completions.create(**chat("b"))
    assert not answer.cache_hit
    assert answer.choices[0].message.content == b.choices[0].message.content
    assert client.stats().errors == 1


def test_signed_entries_reject_unsigned_and_badly_signed_ones(
    make_client: Any, plugin: TestBackends, sim: Simulator
) -> None:
    unsigned = make_client(tiers=["sharedmem://s"], plugins=[plugin])
    unsigned.chat.completions.create(**chat())
    signed = make_client(tiers=["sharedmem://s"], plugins=[plugin], signing_key="secret-1")
    assert not signed.chat.completions.create(**chat()).cache_hit
    assert signed.stats().errors == 1
    assert signed.chat.completions.create(**chat()).cache_hit
    other_key = make_client(tiers=["sharedmem://s"], plugins=[plugin], signing_key="secret-2")
    assert not other_key.chat.completions.create(**chat()).cache_hit
    assert other_key.stats().errors == 1


def test_large_entries_are_compressed(make_client: Any, plugin: TestBackends) -> None:
    client = make_client(tiers=["sharedmem://s"], plugins=[plugin], compress_threshold=64)
    long_prompt = "tell me about caching " * 40
    answer = client.chat.completions.create(**chat(long_prompt))
    raw = STORES["s"].get(physical_key("default", answer.cache_key))
    assert raw is not None
    assert msgpack.unpackb(raw)[2][-1] == 1 + 8  # body codec: zlib; its request null-free
    assert client.chat.completions.create(**chat(long_prompt)).cache_hit


async def test_async_client_fails_open_too(async_openai_client: Any, plugin: TestBackends) -> None:
    from llmcache import CachedClient

    client = CachedClient(async_openai_client, tiers=["memory://", "broken://"], plugins=[plugin])
    await client.chat.completions.create(**chat())
    assert (await client.chat.completions.create(**chat())).cache_hit
    assert client.stats().errors >= 1
    await client.close()
