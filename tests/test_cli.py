"""The ``llmcache`` command line, run as a subprocess against real stores.

Stores are filled by real ``CachedClient``s over the simulator; SQLite files, a Redis
server and memcached servers of the test session hold them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from openai import OpenAI

from llmcache import CachedClient
from llmcache._rules.keys import physical_key
from llmcache.tools.inventory import open_store
from llmcache.tools.simulator import Simulator
from tests.memcached_fixtures import MemcachedServer, memcached_servers
from tests.redis_fixtures import RedisServer, redis_server

__all__ = ["memcached_servers", "redis_server"]  # fixtures, used by name

DAY = 86400.0


def llmcache(*args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m llmcache.tools.cli ARGS`` and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "llmcache.tools.cli", *args],
        input=answer,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stats_json(url: str, *extra: str) -> dict[str, Any]:
    done = llmcache("stats", url, "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def entries(url: str, namespace: str) -> int:
    found = stats_json(url)["namespaces"].get(namespace)
    return 0 if found is None else int(found["entries"])


@pytest.fixture
def fill(sim: Simulator) -> Callable[..., None]:
    """Store one answer per prompt in ``url`` under ``namespace``, as a real client would."""

    def fill(url: str, namespace: str, prompts: list[str], **options: Any) -> None:
        wrapped = OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
        with CachedClient(wrapped, tiers=[url], namespace=namespace) as client:
            for prompt in prompts:
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": prompt}],
                    **options,
                )

    return fill


def backdate(url: str, namespace: str, logical: str, age: float) -> None:
    """Store an entry created ``age`` seconds ago (the store keeps the creation time)."""
    store = open_store(url)
    try:
        store.backend.set(physical_key(namespace, logical), b"old", None, created=time.time() - age)
    finally:
        store.backend.close()


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty listable store."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'c.db'}"
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    address = f"{server.url}/9"
    redis.Redis.from_url(address).flushdb()
    try:
        yield address
    finally:
        redis.Redis.from_url(address).flushdb()


@pytest.fixture
def filled(url: str, fill: Callable[..., None]) -> str:
    """A store with 3 fresh entries in 'default' and 2 fresh plus 1 two-day-old in 'shop'."""
    fill(url, "default", ["a", "b", "c"])
    fill(url, "shop", ["d", "e"])
    backdate(url, "shop", "old-entry", 2 * DAY)
    return url


# -- help ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ([], ["stats", "clear", "demo"]),
        (["stats"], ["--namespace", "--json", "URL"]),
        (["clear"], ["--namespace", "--all-namespaces", "--key", "--older-than", "--yes"]),
        (["demo"], ["--tier", "--rounds"]),
    ],
    ids=["llmcache", "stats", "clear", "demo"],
)
def test_every_command_has_help(command: list[str], mentions: list[str]) -> None:
    done = llmcache(*command, "--help")

    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    for word in mentions:
        assert word in done.stdout


# -- stats --------------------------------------------------------------------------------


def test_stats_counts_entries_bytes_and_ages_per_namespace(filled: str) -> None:
    report = stats_json(filled)

    assert report["listable"] is True
    default, shop = report["namespaces"]["default"], report["namespaces"]["shop"]
    assert (default["entries"], shop["entries"]) == (3, 3)
    assert default["bytes"] > 0
    assert default["age_buckets"] == {"<1h": 3, "<1d": 0, "older": 0, "unknown": 0}
    assert shop["age_buckets"] == {"<1h": 2, "<1d": 0, "older": 1, "unknown": 0}
    assert shop["age_seconds"]["max"] >= 2 * DAY - 60
    assert shop["age_seconds"]["min"] < 600
    assert report["total"]["entries"] == 6
    assert report["total"]["bytes"] == default["bytes"] + shop["bytes"]


def test_stats_prints_a_table_with_a_total_row(filled: str) -> None:
    done = llmcache("stats", filled)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("store: ")
    assert lines[1].split()[:3] == ["namespace", "entries", "bytes"]
    assert lines[2].split()[:2] == ["default", "3"]
    assert lines[3].split()[:2] == ["shop", "3"]
    assert lines[4].split()[:2] == ["(all)", "6"]
    assert "2.0d" in lines[3]  # the oldest entry's age


def test_stats_for_one_namespace(filled: str) -> None:
    report = stats_json(filled, "--namespace", "shop")

    assert list(report["namespaces"]) == ["shop"]
    assert report["total"]["entries"] == 3


def test_stats_of_an_empty_store_says_so(url: str) -> None:
    done = llmcache("stats", url)

    assert done.returncode == 0, done.stderr
    assert "no llmcache entries" in done.stdout


# -- clear --------------------------------------------------------------------------------


def test_clear_removes_the_default_namespace_only(filled: str) -> None:
    done = llmcache("clear", filled, "--yes")

    assert done.returncode == 0, done.stderr
    assert "Removed 3 entries." in done.stdout
    assert (entries(filled, "default"), entries(filled, "shop")) == (0, 3)


def test_clear_one_namespace_by_key_pattern(url: str, fill: Callable[..., None]) -> None:
    fill(url, "app", ["a", "b"], cache_key="user_1")
    fill(url, "app", ["a"], cache_key="user_2")
    fill(url, "other", ["a"], cache_key="user_1")

    done = llmcache("clear", url, "--namespace", "app", "--key", "user_1:*", "--yes")

    assert "Removed 2 entries." in done.stdout
    assert (entries(url, "app"), entries(url, "other")) == (1, 1)


def test_clear_older_than(filled: str) -> None:
    done = llmcache("clear", filled, "-n", "shop", "--older-than", str(DAY), "--yes")

    assert "Removed 1 entry." in done.stdout
    assert entries(filled, "shop") == 2


def test_clear_all_namespaces(filled: str) -> None:
    done = llmcache("clear", filled, "--all-namespaces", "--yes")

    assert "Removed 6 entries." in done.stdout
    assert stats_json(filled)["namespaces"] == {}


def test_clear_all_namespaces_by_key_pattern(url: str, fill: Callable[..., None]) -> None:
    fill(url, "one", ["a"], cache_key="tenant_9")
    fill(url, "two", ["a"], cache_key="tenant_9")
    fill(url, "two", ["b"], cache_key="tenant_8")

    done = llmcache("clear", url, "--all-namespaces", "--key", "tenant_9:*", "--yes")

    assert "Removed 2 entries." in done.stdout
    assert (entries(url, "one"), entries(url, "two")) == (0, 1)


def test_clear_asks_first_and_a_no_keeps_everything(filled: str) -> None:
    done = llmcache("clear", filled, answer="n\n")

    assert done.returncode == 1
    assert "Remove the entries of namespace 'default'" in done.stdout
    assert "Aborted" in done.stderr
    assert entries(filled, "default") == 3


def test_clear_asks_first_and_a_yes_clears(filled: str) -> None:
    done = llmcache("clear", filled, "-n", "shop", answer="y\n")

    assert done.returncode == 0, done.stderr
    assert "Removed 3 entries." in done.stdout


# -- memcached: clears, cannot list --------------------------------------------------------


@pytest.fixture
def memcached_url(memcached_servers: Callable[[int], list[MemcachedServer]]) -> str:
    return memcached_servers(1)[0].url


def test_stats_on_memcached_says_it_cannot_list(memcached_url: str) -> None:
    report = stats_json(memcached_url)
    text = llmcache("stats", memcached_url)

    assert report["listable"] is False
    assert "cannot list its keys" in report["note"]
    assert "namespaces" not in report
    assert text.returncode == 0
    assert "cannot list its keys" in text.stdout


def test_clear_on_memcached_works_without_a_count(
    memcached_url: str, fill: Callable[..., None], sim: Simulator
) -> None:
    fill(memcached_url, "default", ["a"])
    sim.reset()

    done = llmcache("clear", memcached_url, "--yes")

    assert done.returncode == 0, done.stderr
    assert "cannot count them" in done.stdout
    fill(memcached_url, "default", ["a"])
    assert sim.count() == 1  # the entry was gone: the call went upstream


def test_clear_all_namespaces_by_key_needs_a_listable_store(memcached_url: str) -> None:
    done = llmcache("clear", memcached_url, "--all-namespaces", "--key", "x*", "--yes")

    assert done.returncode == 2
    assert "give --namespace" in done.stderr


# -- bad input ------------------------------------------------------------------------------


def test_namespace_and_all_namespaces_together_are_refused(tmp_path: Path) -> None:
    done = llmcache("clear", f"sqlite:///{tmp_path / 'c.db'}", "-n", "x", "--all-namespaces")

    assert done.returncode == 2
    assert "not both" in done.stderr


@pytest.mark.parametrize("command", ["stats", "clear"])
def test_a_malformed_namespace_is_refused(command: str, tmp_path: Path) -> None:
    done = llmcache(command, f"sqlite:///{tmp_path / 'c.db'}", "--namespace", "a:b")

    assert done.returncode == 2
    assert "'a:b' is not a namespace" in done.stderr


def test_an_unknown_scheme_lists_the_known_ones() -> None:
    done = llmcache("stats", "mongodb://localhost/x")

    assert done.returncode == 1
    assert "unknown cache URL scheme 'mongodb'" in done.stderr
    assert "sqlite" in done.stderr


def test_an_unreachable_store_fails_without_showing_its_password() -> None:
    secret = uuid.uuid4().hex
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        done = llmcache("stats", f"redis://user:{secret}@127.0.0.1:{port}/0", "--timeout", "1")

    assert done.returncode == 1
    assert "failed" in done.stderr
    assert secret not in done.stderr + done.stdout
