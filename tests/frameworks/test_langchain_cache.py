"""``llmcache.integrations.langchain.LLMCache``: LangChain's ``BaseCache`` over llmcache tiers.

LangChain's own standard suites (``SyncCacheTestSuite``, ``AsyncCacheTestSuite``) run on
every backend; the rest proves what the tiers add (promotion, signing, TTLs, fail-open,
statistics, shared entries between processes) with real servers and real LangChain models
pointed at the simulator.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import orjson
import pytest
from pydantic import BaseModel, SecretStr

from tests.servers import IN_CI, free_port

if importlib.util.find_spec("langchain_tests") is None:  # not in the main environment
    if IN_CI:
        pytest.fail("langchain-tests is missing: run these tests in the langchain session")
    pytest.skip("needs langchain-core, langchain-openai, langchain-tests", allow_module_level=True)

from langchain_core.globals import set_llm_cache
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite

from llmcache import BackendError, CachedClient, ConfigError
from llmcache._plugins import get_registry
from llmcache._tiers.codec import Codec, Entry
from llmcache.integrations.langchain import LLMCache
from llmcache.tools.simulator import Simulator
from tests.memcached_fixtures import MemcachedServer, memcached_server
from tests.redis_fixtures import RedisServer, redis_server

__all__ = ["memcached_server", "redis_server"]  # fixtures, used by name

ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini"
PROMPT = "Sample prompt for testing."
LLM_STRING = "Sample LLM string configuration."
BACKENDS = ["memory", "sqlite", "memory+sqlite", "redis", "memcached"]


def tier_urls(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The tier URLs of a backend id, starting its server when it needs one."""
    sqlite = f"sqlite:///{tmp_path}/cache.db"
    if name == "memory":
        return ["memory://"]
    if name == "sqlite":
        return [sqlite]
    if name == "memory+sqlite":
        return ["memory://", sqlite]
    if name == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return [server.url]
    assert name == "memcached"
    memcached: MemcachedServer = request.getfixturevalue("memcached_server")
    return [memcached.url]


@pytest.fixture(params=BACKENDS)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    return tier_urls(request.param, request, tmp_path)


def fresh_namespace() -> str:
    """A namespace no other test uses: the session's servers start out empty for it."""
    return f"lc-{uuid4().hex[:12]}"


class TestLangChainSyncSuite(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, urls: list[str]) -> Iterator[LLMCache]:
        cache = LLMCache(tiers=urls, namespace=fresh_namespace())
        yield cache
        cache.close()


class TestLangChainAsyncSuite(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, urls: list[str]) -> AsyncIterator[LLMCache]:
        cache = LLMCache(tiers=urls, namespace=fresh_namespace())
        yield cache
        await cache.aclose()
        cache.close()


def chat_generation(text: str = "A cache keeps answers.") -> ChatGeneration:
    usage = {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42}
    message = AIMessage(text, usage_metadata=usage, response_metadata={"model_name": MODEL})
    return ChatGeneration(message=message)


def physical_key(namespace: str, prompt: str, llm_string: str) -> str:
    """The documented key: BLAKE2b of the canonical JSON of (version, prompt, llm_string)."""
    digest = hashlib.blake2b(orjson.dumps(["v1", prompt, llm_string]), digest_size=16)
    return f"llmcache:{namespace}:langchain:v1-{digest.hexdigest()}"


def sqlite_backend(url: str) -> object:
    return get_registry().backend("sqlite").factory(url, timeout=1.0)


# -- entries ---------------------------------------------------------------------------------


def test_an_entry_is_langchains_json_under_the_digest_of_prompt_and_llm_string(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    cache = LLMCache(tiers=[url], namespace="app")
    cache.update(PROMPT, LLM_STRING, [chat_generation()])
    backend = sqlite_backend(url)
    key = physical_key("app", PROMPT, LLM_STRING)
    data = backend.get(key)  # type: ignore[attr-defined]
    assert data is not None
    entry = Codec().decode(data, key)
    assert entry.kind == "langchain"
    assert entry.payload.startswith('[{"lc": 1, "type": "constructor"')
    assert b"\x80\x04" not in data  # no pickle protocol header anywhere
    assert (entry.model, entry.prompt_tokens, entry.completion_tokens) == (MODEL, 12, 30)


def test_a_hit_serves_equal_generations_as_new_objects_every_time() -> None:
    cache = LLMCache()
    stored = [chat_generation(), Generation(text="plain", generation_info={"lc": 1})]
    cache.update(PROMPT, LLM_STRING, stored)
    first = cache.lookup(PROMPT, LLM_STRING)
    second = cache.lookup(PROMPT, LLM_STRING)
    assert first == stored
    assert second == stored
    assert first is not None
    assert second is not None
    assert first[0] is not second[0]  # a caller mutating its answer cannot change the next


def test_prompt_and_llm_string_both_make_the_key() -> None:
    cache = LLMCache()
    cache.update(PROMPT, LLM_STRING, [Generation(text="one")])
    assert cache.lookup(PROMPT, LLM_STRING + " temperature=1") is None
    assert cache.lookup(PROMPT + " ", LLM_STRING) is None
    # the pair is hashed as a JSON list, so moving text across the boundary is another key
    cache.update("ab", "c", [Generation(text="ab|c")])
    assert cache.lookup("a", "bc") is None


def test_a_hit_counts_the_answers_tokens_and_dollars_saved() -> None:
    cache = LLMCache(pricing={MODEL: {"input": 1.0, "output": 2.0}})
    cache.update(PROMPT, LLM_STRING, [chat_generation()])
    assert cache.lookup(PROMPT, LLM_STRING) is not None
    assert cache.lookup("another prompt", LLM_STRING) is None
    stats = cache.stats()
    assert (stats.requests, stats.hits, stats.misses, stats.errors) == (2, 1, 1, 0)
    assert stats.tokens_saved == 42
    assert stats.cost_saved_usd == pytest.approx((12 * 1.0 + 30 * 2.0) / 1e6)
    assert dict(stats.tier_hits) == {"L1:memory": 1}
    cache.reset_stats()
    assert cache.stats().requests == 0


# -- tiers -----------------------------------------------------------------------------------


def test_a_hit_in_l2_is_promoted_to_l1(tmp_path: Path) -> None:
    urls = ["memory://", f"sqlite:///{tmp_path}/c.db"]
    LLMCache(tiers=urls).update(PROMPT, LLM_STRING, [Generation(text="shared")])
    reader = LLMCache(tiers=urls)  # its memory tier is its own, and empty
    assert reader.lookup(PROMPT, LLM_STRING) == [Generation(text="shared")]
    assert reader.lookup(PROMPT, LLM_STRING) == [Generation(text="shared")]
    assert dict(reader.stats().tier_hits) == {"L2:sqlite": 1, "L1:memory": 1}
    assert reader.tiers == ["L1:memory", "L2:sqlite"]


async def test_sync_and_async_calls_share_the_memory_tier() -> None:
    cache = LLMCache(tiers=["memory://"])
    cache.update(PROMPT, LLM_STRING, [Generation(text="sync")])
    assert await cache.alookup(PROMPT, LLM_STRING) == [Generation(text="sync")]
    await cache.aupdate("async prompt", LLM_STRING, [Generation(text="async")])
    assert cache.lookup("async prompt", LLM_STRING) == [Generation(text="async")]
    assert cache.stats().hits == 2


async def test_async_calls_on_a_shared_tier_see_what_sync_calls_stored(
    redis_server: RedisServer,
) -> None:
    namespace = fresh_namespace()
    writer = LLMCache(tiers=["memory://", redis_server.url], namespace=namespace)
    writer.update(PROMPT, LLM_STRING, [Generation(text="from sync")])
    reader = LLMCache(tiers=[redis_server.url], namespace=namespace)
    assert await reader.alookup(PROMPT, LLM_STRING) == [Generation(text="from sync")]
    await reader.aclear()
    assert await reader.alookup(PROMPT, LLM_STRING) is None
    fresh = LLMCache(tiers=[redis_server.url], namespace=namespace)
    assert fresh.lookup(PROMPT, LLM_STRING) is None  # the sync client sees the clear too
    await reader.aclose()
    writer.close()


def test_entries_expire_after_default_ttl(tmp_path: Path) -> None:
    cache = LLMCache(tiers=["memory://", f"sqlite:///{tmp_path}/c.db"], default_ttl=1)
    cache.update(PROMPT, LLM_STRING, [Generation(text="soon gone")])
    assert cache.lookup(PROMPT, LLM_STRING) is not None
    time.sleep(1.2)
    assert cache.lookup(PROMPT, LLM_STRING) is None


def test_clear_removes_this_caches_entries_and_nothing_else(tmp_path: Path, sim: Simulator) -> None:
    from openai import OpenAI

    url = f"sqlite:///{tmp_path}/c.db"
    cache = LLMCache(tiers=[url], namespace="app")
    neighbour = LLMCache(tiers=[url], namespace="other")
    client = CachedClient(
        OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0),
        tiers=[url],
        namespace="app",
    )
    messages = [{"role": "user", "content": "What is a cache?"}]
    client.chat.completions.create(model=MODEL, messages=messages)
    for c in (cache, neighbour):
        c.update(PROMPT, LLM_STRING, [Generation(text="kept?")])
    cache.clear()
    assert cache.lookup(PROMPT, LLM_STRING) is None
    assert neighbour.lookup(PROMPT, LLM_STRING) == [Generation(text="kept?")]
    assert client.chat.completions.create(model=MODEL, messages=messages).cache_hit


def test_clear_older_than_keeps_recent_entries(tmp_path: Path) -> None:
    cache = LLMCache(tiers=[f"sqlite:///{tmp_path}/c.db"])
    cache.update(PROMPT, LLM_STRING, [Generation(text="recent")])
    cache.clear(older_than=3600)
    assert cache.lookup(PROMPT, LLM_STRING) == [Generation(text="recent")]
    cache.clear(older_than=0)
    assert cache.lookup(PROMPT, LLM_STRING) is None


def test_clear_rejects_options_it_does_not_know() -> None:
    cache = LLMCache()
    with pytest.raises(TypeError, match="'key'; known: older_than"):
        cache.clear(key="*")
    with pytest.raises(ValueError, match="older_than must be a number of seconds >= 0"):
        cache.clear(older_than=-1)


# -- failure and security --------------------------------------------------------------------


def test_a_tier_that_is_down_is_a_miss_counted_as_an_error() -> None:
    down = f"redis://127.0.0.1:{free_port()}?timeout=0.2"
    cache = LLMCache(tiers=["memory://", down])
    cache.update(PROMPT, LLM_STRING, [Generation(text="memory only")])
    assert cache.lookup(PROMPT, LLM_STRING) == [Generation(text="memory only")]
    assert cache.lookup("elsewhere", LLM_STRING) is None
    assert cache.stats().errors >= 1


def test_fail_open_false_raises_backend_error() -> None:
    down = f"redis://127.0.0.1:{free_port()}?timeout=0.2"
    cache = LLMCache(tiers=[down], fail_open=False)
    with pytest.raises(BackendError, match="L1:redis"):
        cache.lookup(PROMPT, LLM_STRING)


def test_an_unsigned_entry_is_a_miss_for_a_signing_cache(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    LLMCache(tiers=[url]).update(PROMPT, LLM_STRING, [Generation(text="unsigned")])
    signed = LLMCache(tiers=[url], signing_key="s3cret")
    assert signed.lookup(PROMPT, LLM_STRING) is None
    assert signed.stats().errors == 1
    signed.update(PROMPT, LLM_STRING, [Generation(text="signed")])
    assert signed.lookup(PROMPT, LLM_STRING) == [Generation(text="signed")]
    assert LLMCache(tiers=[url], signing_key="other").lookup(PROMPT, LLM_STRING) is None


@pytest.mark.parametrize(
    "payload",
    [
        '[{"lc": 1, "type": "secret", "id": ["LLMCACHE_LANGCHAIN_TEST_SECRET"]}]',
        '[{"lc": 1, "type": "constructor", "id": ["langchain", "prompts", "prompt", '
        '"PromptTemplate"], "kwargs": {"template": "{x}", "input_variables": ["x"]}}]',
        '{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "output", '
        '"Generation"], "kwargs": {"text": "not in a list"}}',
        "not json",
    ],
    ids=["secret", "prompt-template", "not-a-list", "not-json"],
)
def test_an_entry_that_is_not_generations_is_a_counted_miss_and_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload: str
) -> None:
    monkeypatch.setenv("LLMCACHE_LANGCHAIN_TEST_SECRET", "the-secret-value")
    url = f"sqlite:///{tmp_path}/c.db"
    key = physical_key("default", PROMPT, LLM_STRING)
    backend = sqlite_backend(url)
    forged = Entry(key, time.time(), None, "langchain", payload)
    backend.set(key, Codec().encode(forged), None)  # type: ignore[attr-defined]
    cache = LLMCache(tiers=[url])
    assert cache.lookup(PROMPT, LLM_STRING) is None
    assert cache.stats().errors == 1
    assert backend.get(key) is None  # type: ignore[attr-defined]


def test_an_entry_of_another_kind_under_the_key_is_not_served(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    key = physical_key("default", PROMPT, LLM_STRING)
    backend = sqlite_backend(url)
    other = Entry(key, time.time(), None, "json", b'{"text": "an SDK answer"}')
    backend.set(key, Codec().encode(other), None)  # type: ignore[attr-defined]
    cache = LLMCache(tiers=[url])
    assert cache.lookup(PROMPT, LLM_STRING) is None
    assert cache.stats().errors == 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"tiers": "memory://"}, "tiers"),
        ({"tiers": ["nosuch://x"]}, "nosuch"),
        ({"namespace": "a b"}, "namespace"),
        ({"default_ttl": 0}, "default_ttl"),
        ({"backend_timeout": 0}, "backend_timeout"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"recovery_time": -1}, "recovery_time"),
        ({"fail_open": "yes"}, "fail_open"),
        ({"signing_key": 42}, "signing_key"),
        ({"compress_threshold": -1}, "compress_threshold"),
        ({"pricing": {MODEL: {"input": "cheap"}}}, MODEL),
    ],
)
def test_a_bad_option_is_a_config_error_naming_it(options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        LLMCache(**options)  # type: ignore[arg-type]


def test_importing_llmcache_never_imports_langchain() -> None:
    code = (
        "import sys, llmcache, llmcache.integrations\n"
        "print(sorted(m for m in sys.modules if m.startswith('langchain')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# -- LangChain models ------------------------------------------------------------------------


def run_python(code: str, cwd: Path, sim: Simulator) -> str:
    """Run ``code`` in a new interpreter with the simulator as OpenAI; return its stdout."""
    env = {
        **os.environ,
        "OPENAI_BASE_URL": sim.base_url,
        "OPENAI_API_KEY": "sk-test-secret-key",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def global_cache() -> Iterator[Callable[[LLMCache], None]]:
    """Set LangChain's process-wide cache for one test."""
    yield set_llm_cache
    set_llm_cache(None)


def test_a_second_invoke_in_another_process_is_a_hit_on_the_shared_tier(
    tmp_path: Path,
    sim: Simulator,
    global_cache: Callable[[LLMCache], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    first = run_python(
        "from langchain_core.globals import set_llm_cache\n"
        "from langchain_openai import ChatOpenAI\n"
        "from llmcache.integrations.langchain import LLMCache\n"
        f"set_llm_cache(LLMCache(tiers=[{url!r}]))\n"
        f"llm = ChatOpenAI(model={MODEL!r}, max_retries=0)\n"
        "print(llm.invoke('What is a cache?').content)\n",
        tmp_path,
        sim,
    )
    assert sim.count() == 1

    # the same model, built the same way: LangChain's llm_string is part of the key
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-key")
    cache = LLMCache(tiers=["memory://", url])
    global_cache(cache)
    llm = ChatOpenAI(model=MODEL, max_retries=0)
    answer = llm.invoke("What is a cache?")
    assert sim.count() == 1  # nothing went upstream the second time
    assert answer.content == first.strip()
    assert dict(cache.stats().tier_hits) == {"L2:sqlite": 1}
    assert cache.stats().tokens_saved > 0


async def test_ainvoke_is_served_by_the_async_tiers(
    tmp_path: Path, sim: Simulator, global_cache: Callable[[LLMCache], None]
) -> None:
    cache = LLMCache(tiers=["memory://", f"sqlite:///{tmp_path}/c.db"])
    global_cache(cache)
    llm = ChatOpenAI(
        model=MODEL, base_url=sim.base_url, api_key=SecretStr("sk-test"), max_retries=0
    )
    first = await llm.ainvoke("What is a cache?")
    again = await llm.ainvoke("What is a cache?")
    assert sim.count() == 1
    assert again.content == first.content
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)
    await cache.aclose()


class Weather(BaseModel):
    """Report the weather of a city."""

    city: str


def test_tool_calls_and_streamed_answers_come_back_whole(
    sim: Simulator, global_cache: Callable[[LLMCache], None]
) -> None:
    global_cache(LLMCache(tiers=["memory://"]))
    key = SecretStr("sk-test")
    llm = ChatOpenAI(model=MODEL, base_url=sim.base_url, api_key=key, max_retries=0)
    tools = llm.bind_tools([Weather], tool_choice="Weather")
    first = tools.invoke("Weather in Paris?")
    again = tools.invoke("Weather in Paris?")
    assert sim.count() == 1
    assert first.tool_calls
    assert again.tool_calls == first.tool_calls
    streamed = ChatOpenAI(
        model=MODEL, base_url=sim.base_url, api_key=key, max_retries=0, streaming=True
    )
    first = streamed.invoke("Tell me about caches.")
    again = streamed.invoke("Tell me about caches.")
    assert sim.count() == 2
    assert again.content == first.content


def readme_recipe(heading: str) -> str:
    """The first ``python`` block below ``heading`` in the README."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"\n{heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_the_readme_recipe_runs_as_written(tmp_path: Path, sim: Simulator) -> None:
    out = run_python(readme_recipe("### LangChain's LLM cache"), tmp_path, sim)
    assert sim.count() == 1
    assert out.split() == ["1"]
    assert list(tmp_path.glob("*.db"))  # the shared tier is a file next to the app
