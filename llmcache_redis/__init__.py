"""llmcache_redis: Redis, Redis Cluster and Redis Sentinel tiers for llmcache
(``pip install 'llmcache[redis]'``).

Registered through the ``llmcache`` entry-point group; use a tier URL such as
``redis://localhost:6379/0``, ``redis+cluster://host:7000,host:7001`` or
``redis+sentinel://host:26379,host:26380/mymaster/0``.
"""

from .backend import AsyncRedisBackend, RedisBackend
from .cluster import AsyncRedisClusterBackend, RedisClusterBackend
from .sentinel import AsyncRedisSentinelBackend, RedisSentinelBackend
from .urls import RedisURL, parse_redis_url

__all__ = [
    "AsyncRedisBackend",
    "AsyncRedisClusterBackend",
    "AsyncRedisSentinelBackend",
    "RedisBackend",
    "RedisClusterBackend",
    "RedisSentinelBackend",
    "RedisURL",
    "parse_redis_url",
]
