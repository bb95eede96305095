"""The backend contract, the built-in memory backend's home, and the helpers adapters need.

Adapters (llmcache's own and third-party ones) import from here and from ``llmcache``
only: the protocols and base classes, what ``scan`` yields, option checking, the glob
dialect of ``clear``, and the layout of physical keys.
"""

from llmcache._rules.keys import KEY_PREFIX, namespace_glob, physical_key, split_physical_key
from llmcache.backends.base import (
    AWAITS,
    AsyncCacheBackend,
    BaseAsyncCacheBackend,
    BaseCacheBackend,
    CacheBackend,
    StoredEntry,
    SyncToAsync,
    reject_unknown_options,
)
from llmcache.backends.capabilities import Capabilities, conform
from llmcache.backends.globs import escape as escape_glob
from llmcache.backends.globs import to_like as glob_to_like
from llmcache.backends.globs import to_redis as glob_to_redis
from llmcache.backends.globs import to_regex as glob_to_regex
from llmcache.backends.urls import redact

__all__ = [
    "AWAITS",
    "KEY_PREFIX",
    "AsyncCacheBackend",
    "BaseAsyncCacheBackend",
    "BaseCacheBackend",
    "CacheBackend",
    "Capabilities",
    "StoredEntry",
    "SyncToAsync",
    "conform",
    "escape_glob",
    "glob_to_like",
    "glob_to_redis",
    "glob_to_regex",
    "namespace_glob",
    "physical_key",
    "redact",
    "reject_unknown_options",
    "split_physical_key",
]
