"""The plugin manager: built-ins as plugins, entry points, run-time and per-client plugins."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import chat

import llmcache
from llmcache import CacheEvent, hookimpl
from llmcache._plugins import DEFAULT_PLUGINS, get_registry
from llmcache.tools.simulator import Simulator


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, CacheEvent]] = []

    @hookimpl
    def llmcache_on_hit(self, event: CacheEvent) -> None:
        self.events.append(("hit", event))

    @hookimpl
    def llmcache_on_miss(self, event: CacheEvent) -> None:
        self.events.append(("miss", event))

    @hookimpl
    def llmcache_on_store(self, event: CacheEvent) -> None:
        self.events.append(("store", event))


class Faulty:
    @hookimpl
    def llmcache_on_hit(self, event: CacheEvent) -> None:
        raise RuntimeError("observer bug")


class PerUserKeys:
    @hookimpl
    def llmcache_register_key_strategies(self, register: Any) -> None:
        register("per-user", llmcache.RequestKeyStrategy())


@pytest.fixture
def registered() -> Iterator[list[object]]:
    plugins: list[object] = []
    yield plugins
    for plugin in plugins:
        llmcache.unregister_plugin(plugin)


def test_built_ins_are_ordinary_plugins() -> None:
    names = {name for name, _ in get_registry().pm.list_name_plugin()}
    assert set(DEFAULT_PLUGINS) <= names
    assert "memory" in get_registry().schemes()


def test_events_reach_observers(make_client: Any) -> None:
    recorder = Recorder()
    client = make_client(plugins=[recorder])
    client.chat.completions.create(**chat())
    client.chat.completions.create(**chat())
    kinds = [kind for kind, _ in recorder.events]
    assert kinds == ["store", "miss", "hit"]
    hit = recorder.events[-1][1]
    assert hit.tier == "L1:memory"
    assert hit.elapsed >= 0
    assert hit.request.endpoint == "chat.completions"
    assert hit.tokens_saved > 0


def test_an_observer_that_raises_never_breaks_a_request(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    client = make_client(plugins=[Faulty(), recorder])
    client.chat.completions.create(**chat())
    with caplog.at_level(logging.ERROR, logger="llmcache"):
        assert client.chat.completions.create(**chat()).cache_hit
    assert "observer bug" in caplog.text
    assert [k for k, _ in recorder.events][-1] == "hit"


def test_register_plugin_adds_a_strategy_for_every_client(
    make_client: Any, registered: list[object]
) -> None:
    plugin = PerUserKeys()
    llmcache.register_plugin(plugin)
    registered.append(plugin)
    client = make_client(key_strategy="per-user")
    client.chat.completions.create(**chat())
    assert client.chat.completions.create(**chat()).cache_hit


def test_per_client_plugins_do_not_leak_to_other_clients(make_client: Any) -> None:
    make_client(key_strategy="per-user", plugins=[PerUserKeys()])
    with pytest.raises(llmcache.ConfigError, match="per-user"):
        make_client(key_strategy="per-user")


def test_unknown_strategy_lists_plugin_registered_names(make_client: Any) -> None:
    with pytest.raises(llmcache.ConfigError, match="known: request, explicit, per-user"):
        make_client(key_strategy="per_user", plugins=[PerUserKeys()])


def _schemes_in_subprocess(**env: str) -> str:
    code = "from llmcache._plugins import get_registry; print(','.join(get_registry().schemes()))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_adapters_are_found_by_entry_point() -> None:
    schemes = _schemes_in_subprocess().split(",")
    assert {"redis", "sqlite", "memcached", "memory"} <= set(schemes)


def test_autoload_can_be_disabled_by_environment() -> None:
    assert _schemes_in_subprocess(LLMCACHE_DISABLE_PLUGIN_AUTOLOAD="1") == "memory"
    limited = _schemes_in_subprocess(LLMCACHE_DISABLE_PLUGIN_AUTOLOAD="1", LLMCACHE_PLUGINS="redis")
    assert "redis" in limited.split(",")
    assert "sqlite" not in limited.split(",")


def test_import_llmcache_needs_no_driver() -> None:
    code = (
        "import sys\n"
        "for name in ('redis', 'sqlalchemy', 'pymemcache'): sys.modules[name] = None\n"
        "import llmcache\n"
        "from llmcache._plugins import get_registry\n"
        "print(','.join(get_registry().schemes()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "memory" in result.stdout


def test_missing_driver_names_the_extra_to_install(sim: Simulator) -> None:
    code = (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "from openai import OpenAI\n"
        "from llmcache import CachedClient, MissingExtraError\n"
        "try:\n"
        "    CachedClient(OpenAI(api_key='x', base_url='http://127.0.0.1:9'), tiers=['redis://localhost'])\n"
        "except MissingExtraError as exc:\n"
        "    print(type(exc).__mro__[1].__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "llmcache[redis]" in result.stdout
