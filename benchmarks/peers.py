"""Peer caches, when installed: the same cached response read through their lookup paths.

Each peer holds the typical response (stored through its own API), and its hit path is
timed in alternating blocks against ours on the matching tier (memory, SQLite or Redis: the
full ``client.chat.completions.create`` hit returning a ``ChatCompletion``). What is timed
for each peer is the work its own library does on a hit, from the request to the object it
hands back:

- LangChain (``InMemoryCache``, ``SQLiteCache``, ``RedisCache``): what
  ``BaseChatModel._generate_with_cache`` does: the prompt key ``dumps(messages)`` of the
  LangChain messages, the ``llm_string`` of the call's parameters, ``cache.lookup`` (a dict
  lookup; a SQLAlchemy ``SELECT`` and ``loads``; ``HGETALL`` and ``loads``) and the
  ``ChatResult`` built from the cached ``ChatGeneration``.
- LiteLLM (``Cache(type="local")``, ``Cache(type="redis")``): ``cache.get_cache(model=...,
  messages=...)`` (its key: a SHA-256 of the call's parameters; the lookup; the cached
  dict) and ``convert_to_model_response_object`` into a ``ModelResponse``, as its caching
  handler does.
- GPTCache (map data manager, exact match, ``pre_embedding_func=get_prompt``): the
  whole-request key (the request's JSON, keys sorted), ``gptcache.adapter.api.get`` and
  ``json.loads`` of the stored response JSON (GPTCache returns what was put; its OpenAI
  adapter does not support this SDK).

None of these goes through an SDK client, so the peers skip work ours does (a pass through
the wrapped client's resource tree, ``cache_*`` options, statistics): the comparison favours
them slightly.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from llmcache import CachedClient

from .timing import Paired, paired
from .upstream import Upstream
from .workload import MODEL, chat_request, openai_client

__all__ = ["PeerRow", "Settings", "measure_peers"]


@dataclass(frozen=True)
class PeerRow:
    """One peer's hit path against ours on the matching tier."""

    peer: str
    version: str
    tier: str
    timed: str
    result: Paired | None
    error: str = ""


@dataclass(frozen=True)
class Settings:
    """How long each peer is measured."""

    rounds: int = 11
    block: int = 30  # calls per block at least; more when a call is fast


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _langchain(response: Any, params: dict[str, Any], kind: str, where: Any) -> Callable[[], Any]:
    from langchain_core.load import dumps
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    classes = {"system": SystemMessage, "assistant": AIMessage, "user": HumanMessage}
    messages = [classes[m["role"]](content=m["content"]) for m in params["messages"]]
    llm_params = {"_type": "openai-chat", "model_name": MODEL, "stop": None, "temperature": 0.7}
    usage = response.usage
    generation = ChatGeneration(
        message=AIMessage(
            content=response.choices[0].message.content,
            id=response.id,
            response_metadata={
                "token_usage": usage.model_dump(),
                "model_name": response.model,
                "system_fingerprint": response.system_fingerprint,
                "finish_reason": response.choices[0].finish_reason,
            },
            usage_metadata={
                "input_tokens": usage.prompt_tokens,
                "output_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        )
    )
    if kind == "memory":
        from langchain_core.caches import InMemoryCache

        cache: Any = InMemoryCache()
    elif kind == "sqlite":
        from langchain_community.cache import SQLiteCache

        cache = SQLiteCache(database_path=str(where))
    else:
        import redis
        from langchain_community.cache import RedisCache

        cache = RedisCache(redis_=redis.Redis(host="127.0.0.1", port=where))
    llm_string = str(sorted(llm_params.items()))
    cache.update(dumps(messages), llm_string, [generation])

    def hit() -> Any:
        prompt = dumps(messages)
        key = str(sorted(llm_params.items()))
        cached = cache.lookup(prompt, key)
        assert cached, "LangChain cache missed"
        return ChatResult(generations=cached)

    return hit


def _litellm(response: Any, params: dict[str, Any], kind: str, where: Any) -> Callable[[], Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network on import
    import litellm
    from litellm.caching.caching import Cache
    from litellm.utils import convert_to_model_response_object

    litellm.telemetry = False
    if kind == "memory":
        cache = Cache(type="local")
    else:
        cache = Cache(type="redis", host="127.0.0.1", port=str(where))
    model_response = litellm.ModelResponse(**response.to_dict())
    cache.add_cache(model_response, model=MODEL, messages=params["messages"])

    def hit() -> Any:
        cached = cache.get_cache(model=MODEL, messages=params["messages"])
        assert cached is not None, "LiteLLM cache missed"
        return convert_to_model_response_object(
            response_object=cached, model_response_object=litellm.ModelResponse()
        )

    return hit


def _gptcache(response: Any, params: dict[str, Any], kind: str, where: Any) -> Callable[[], Any]:
    from gptcache import Cache
    from gptcache.adapter.api import get, put
    from gptcache.manager import get_data_manager
    from gptcache.processor.pre import get_prompt

    # GPTCache flushes its map to disk at exit: give it a directory that outlives the run's
    # (atexit runs last-registered first, so this removal runs after GPTCache's flush)
    directory = tempfile.mkdtemp(prefix="llmcache-bench-gptcache-")
    atexit.register(shutil.rmtree, directory, True)
    cache = Cache()
    cache.init(
        pre_embedding_func=get_prompt,
        data_manager=get_data_manager(data_path=str(Path(directory) / "map.txt")),
    )
    put(json.dumps(params, sort_keys=True), response.to_json(), cache_obj=cache)

    def hit() -> Any:
        answer = get(json.dumps(params, sort_keys=True), cache_obj=cache)
        assert answer is not None, "GPTCache missed"
        return json.loads(answer)

    return hit


_PEERS: list[tuple[str, str, str, Callable[..., Callable[[], Any]], str]] = [
    ("LangChain InMemoryCache", "langchain-core", "memory", _langchain, "memory"),
    ("LangChain SQLiteCache", "langchain-community", "SQLite", _langchain, "sqlite"),
    ("LangChain RedisCache", "langchain-community", "Redis", _langchain, "redis"),
    ("LiteLLM in-memory Cache", "litellm", "memory", _litellm, "memory"),
    ("LiteLLM Redis Cache", "litellm", "Redis", _litellm, "redis"),
    ("GPTCache (map, exact match)", "gptcache", "memory", _gptcache, "memory"),
]

_TIMED = {
    "LangChain": "dumps(messages) + llm_string + cache.lookup + ChatResult",
    "LiteLLM": "cache.get_cache(model, messages) + convert_to_model_response_object",
    "GPTCache": "json.dumps(request) key + api.get + json.loads",
}


def measure_peers(
    upstream: Upstream,
    redis_url: str,
    redis_port: int,
    workdir: Path,
    settings: Settings,
    log: Callable[[str], None],
) -> list[PeerRow]:
    """Measure every installed peer against our client on the matching tier."""
    sync_openai = openai_client(upstream.base_url)
    params = chat_request()
    ours = {
        "memory": CachedClient(sync_openai, tiers=["memory://"], namespace="peers"),
        "SQLite": CachedClient(
            sync_openai, tiers=[f"sqlite:///{workdir / 'peers-ours.db'}"], namespace="peers"
        ),
        "Redis": CachedClient(sync_openai, tiers=[redis_url], namespace="peers"),
    }
    response = ours["memory"].chat.completions.create(**params)
    for client in ours.values():
        client.chat.completions.create(**params)
    where = {"memory": workdir, "sqlite": workdir / "peers-langchain.db", "redis": redis_port}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LangChain's beta and deprecation notices
            return [
                _measure_peer(peer, response, params, ours, where, upstream, settings, log)
                for peer in _PEERS
            ]
    finally:
        for client in ours.values():
            client.close()
        sync_openai.close()


def _measure_peer(
    peer: tuple[str, str, str, Callable[..., Callable[[], Any]], str],
    response: Any,
    params: dict[str, Any],
    ours: dict[str, Any],
    where: dict[str, Any],
    upstream: Upstream,
    settings: Settings,
    log: Callable[[str], None],
) -> PeerRow:
    name, package, tier, build, kind = peer
    version = _version(package)
    timed = _TIMED[name.split()[0]]
    try:
        hit = build(response, params, kind, where[kind])
        hit()
    except Exception as exc:  # an uninstalled or incompatible peer is reported, not fatal
        error = f"{type(exc).__name__}: {exc}"
        log(f"  peer {name:<30} unavailable: {error}"[:160])
        return PeerRow(name, version, tier, timed, None, error)
    create = ours[tier].chat.completions.create
    before = upstream.count()
    result = paired(
        hit,
        lambda: create(**params),
        rounds=settings.rounds,
        block=settings.block,
        block_seconds=0.03,
    )
    if upstream.count() != before:
        raise RuntimeError(f"measuring {name} reached the upstream")
    log(f"  peer {name:<30} {result.ours.median_us:8.1f} us  x{result.ratio:.2f} of ours")
    return PeerRow(name, version, tier, timed, result)
