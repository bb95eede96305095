"""llmcache: a caching layer for OpenAI-compatible and Anthropic clients."""

from .backends.base import AsyncCacheBackend, CacheBackend
from .client import AsyncCachedClient, CachedClient
from .errors import BackendError, CacheMiss, ConfigError, LLMCacheError, MissingExtraError
from .events import CacheEvent
from .hookspecs import hookimpl, hookspec
from .http import AsyncCacheTransport, CacheTransport, async_http_client, http_client
from .keys import ExplicitKeyStrategy, RequestKeyStrategy
from .plugins import register_plugin, unregister_plugin
from .request import NEVER, CacheOptions, CacheRequest
from .stats import CacheStats
from .ttl import FixedPolicy, IntentPolicy

__version__ = "0.1.0"

__all__ = [
    "NEVER",
    "AsyncCacheBackend",
    "AsyncCacheTransport",
    "AsyncCachedClient",
    "BackendError",
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
    "LLMCacheError",
    "MissingExtraError",
    "RequestKeyStrategy",
    "__version__",
    "async_http_client",
    "hookimpl",
    "hookspec",
    "http_client",
    "register_plugin",
    "unregister_plugin",
]
