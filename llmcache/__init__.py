"""llmcache: a caching layer for OpenAI-compatible and Anthropic clients."""

from llmcache import _moved
from llmcache._observe.events import CacheEvent
from llmcache._observe.stats import CacheStats
from llmcache._plugins import register_plugin, unregister_plugin
from llmcache._rules.keys import (
    ExplicitKeyStrategy,
    KeyStrategy,
    RequestKeyStrategy,
    UncacheableRequest,
    request_digest,
)
from llmcache._rules.pricing import DEFAULT_PRICES, PRICES_AS_OF
from llmcache._rules.request import NEVER, CacheOptions, CacheRequest
from llmcache._rules.ttl import DEFAULT, FixedPolicy, IntentPolicy, TTLPolicy
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
    "DEFAULT",
    "DEFAULT_PRICES",
    "NEVER",
    "PRICES_AS_OF",
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
    "UncacheableRequest",
    "__version__",
    "async_http_client",
    "explain",
    "hookimpl",
    "hookspec",
    "http_client",
    "register_plugin",
    "request_digest",
    "unregister_plugin",
]

_moved.install()  # moved modules keep their old import paths for one release
