"""llmcache_redis: Redis and Redis Cluster tiers for llmcache (``pip install 'llmcache[redis]'``).

Registered through the ``llmcache`` entry-point group; use a tier URL such as
``redis://localhost:6379/0`` or ``redis+cluster://host:7000,host:7001``.
"""

from .backend import AsyncRedisBackend, RedisBackend
from .cluster import AsyncRedisClusterBackend, RedisClusterBackend
from .urls import RedisURL, parse_redis_url

__all__ = [
    "AsyncRedisBackend",
    "AsyncRedisClusterBackend",
    "RedisBackend",
    "RedisClusterBackend",
    "RedisURL",
    "parse_redis_url",
]
