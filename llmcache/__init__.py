"""llmcache: a caching layer for OpenAI-compatible and Anthropic clients."""

from llmcache import _moved
from llmcache._observe.events import CacheEvent
from llmcache._observe.stats import CacheStats
from llmcache._plugins import register_plugin, unregister_plugin
from llmcache._rules.keys import ExplicitKeyStrategy, KeyStrategy, RequestKeyStrategy
from llmcache._rules.request import NEVER, CacheOptions, CacheRequest
from llmcache._rules.ttl import FixedPolicy, IntentPolicy, TTLPolicy
from llmcache._wrapper.client import AsyncCachedClient, CachedClient
from llmcache.backends.base import (
    AsyncCacheBackend,
    BaseAsyncCacheBackend,
    BaseCacheBackend,
    CacheBackend,
)
from llmcache.errors import BackendError, CacheMiss, ConfigError, LLMCacheError, MissingExtraError
from llmcache.hookspecs import hookimpl, hookspec
from llmcache.http import AsyncCacheTransport, CacheTransport, async_http_client, http_client
from llmcache.testmode import explain

__version__ = "0.1.0"

__all__ = [
    "NEVER",
    "AsyncCacheBackend",
    "AsyncCacheTransport",
    "AsyncCachedClient",
    "BackendError",
    "BaseAsyncCacheBackend",
    "BaseCacheBackend",
    "CacheBackend",
    "CacheEvent",
    "CacheMiss",
    "CacheOptions",
    "CacheRequest",
    "CacheStats",
    "CacheTransport",
    "CachedClient",
    "ConfigError",
    "ExplicitKeyStrategy",
    "FixedPolicy",
    "IntentPolicy",
    "KeyStrategy",
    "LLMCacheError",
    "MissingExtraError",
    "RequestKeyStrategy",
    "TTLPolicy",
    "__version__",
    "async_http_client",
    "explain",
    "hookimpl",
    "hookspec",
    "http_client",
    "register_plugin",
    "unregister_plugin",
]

_moved.install()  # modules moved in 0.2 keep their old import paths for one release
