"""llmcache's memcached tier: ``memcached://host:11211`` or a pool ``memcached://h1,h2``.

Install with ``pip install 'llmcache[memcached]'``; the tier registers itself through the
``llmcache`` entry-point group. See ``docs/memcached.md``.
"""

from .async_backend import AsyncMemcachedBackend, async_from_url
from .backend import InvalidationContention, MemcachedBackend, from_url
from .config import MemcachedConfig, parse_url
from .pool import ServerDown

__all__ = [
    "AsyncMemcachedBackend",
    "InvalidationContention",
    "MemcachedBackend",
    "MemcachedConfig",
    "ServerDown",
    "async_from_url",
    "from_url",
    "parse_url",
]
