"""llmcache: a caching layer for OpenAI-compatible and Anthropic clients."""

from .backends.base import (
    AsyncCacheBackend,
    BaseAsyncCacheBackend,
    BaseCacheBackend,
    CacheBackend,
)
from .client import AsyncCachedClient, CachedClient
from .errors import BackendError, CacheMiss, ConfigError, LLMCacheError, MissingExtraError
from .events import CacheEvent
from .hookspecs import hookimpl, hookspec
from .http import AsyncCacheTransport, CacheTransport, async_http_client, http_client
from .keys import ExplicitKeyStrategy, KeyStrategy, RequestKeyStrategy
from .plugins import register_plugin, unregister_plugin
from .request import NEVER, CacheOptions, CacheRequest
from .stats import CacheStats
from .testmode import explain
from .ttl import FixedPolicy, IntentPolicy, TTLPolicy

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
