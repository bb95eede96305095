"""The Redis tier against real redis-server processes: one server and a 3-master cluster.

The conformance suite runs on both, sync and asyncio. The rest shows what the issue asks
beyond it: URLs and lazy connection, one round trip per multi-key call (counted on the
servers), clear by SCAN + UNLINK and by age from the index, locks, fail-open when the
server dies, and entries shared between processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import redis
from openai import OpenAI

from llmcache import CachedClient, ConfigError, MissingExtraError
from llmcache.backends.base import AsyncCacheBackend, CacheBackend
from llmcache.globs import escape
from llmcache.simulator import Simulator
from llmcache.testing import AsyncBackendSuite, BackendSuite
from llmcache_redis import (
    AsyncRedisBackend,
    AsyncRedisClusterBackend,
    RedisBackend,
    RedisClusterBackend,
)
from llmcache_redis.clearing import PRUNE_GRACE
from llmcache_redis.layout import index_of
from llmcache_redis.plugin import async_from_url, from_url
from tests.redis_fixtures import (
    RedisCluster,
    RedisServer,
    kill_and_restart,
    private_redis_server,
    redis_cluster,
    redis_server,
)
from tests.servers import free_port

__all__ = ["private_redis_server", "redis_cluster", "redis_server"]  # fixtures, used by name

MODEL = "gpt-4o-mini"


def pkey(namespace: str = "t") -> str:
    """A fresh physical key."""
    return f"llmcache:{namespace}:{uuid.uuid4().hex}"


def fresh_namespace() -> str:
    return "ns" + uuid.uuid4().hex[:10]


# -- conformance ---------------------------------------------------------------------------


class TestRedisBackend(BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url + "/1"  # clear() empties the llmcache keys of its db

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestAsyncRedisBackend(AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url + "/2"

    async def make_async_backend(self) -> AsyncCacheBackend:
        return async_from_url(self.url)


class TestRedisUnixSocketBackend(BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_server: RedisServer) -> None:
        self.url = f"unix://{redis_server.unix_socket}?db=3"

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestRedisClusterBackend(BackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_cluster: RedisCluster) -> None:
        self.url = redis_cluster.url

    def make_backend(self) -> CacheBackend:
        return from_url(self.url)


class TestAsyncRedisClusterBackend(AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _url(self, redis_cluster: RedisCluster) -> None:
        self.url = redis_cluster.url

    async def make_async_backend(self) -> AsyncCacheBackend:
        return async_from_url(self.url)


# -- helpers: what the servers saw -----------------------------------------------------------

_BOOKKEEPING = ("info", "config|resetstat", "cluster|", "command", "client|", "hello", "ping")


class ServerStats:
    """Commands the servers processed, from ``INFO commandstats`` (the servers' own count)."""

    def __init__(self, ports: list[int]) -> None:
        self.admins = [redis.Redis(port=port) for port in ports]

    def reset(self) -> None:
        for admin in self.admins:
            admin.config_resetstat()

    def calls(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for admin in self.admins:
            for name, stat in admin.info("commandstats").items():
                command = name.removeprefix("cmdstat_")
                if not command.startswith(_BOOKKEEPING):
                    counts[command] += int(stat["calls"])
        return counts

    def close(self) -> None:
        for admin in self.admins:
            admin.close()


class Writes:
    """Count the requests redis-py writes to its sockets (one write, one round trip)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        import redis.asyncio.connection as aconn
        import redis.connection as conn

        for cls in (conn.AbstractConnection, aconn.AbstractConnection):
            original = cls.send_packed_command

            def counting(self_: Any, *args: Any, _original: Any = original, **kw: Any) -> Any:
                self.count += 1
                return _original(self_, *args, **kw)

            monkeypatch.setattr(cls, "send_packed_command", counting)


Kind = tuple[str, Callable[[], CacheBackend], list[int]]


@pytest.fixture(params=["redis", "redis-cluster"])
def store(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_cluster: RedisCluster
) -> Iterator[tuple[CacheBackend, ServerStats]]:
    """A sync backend on the server (db 4) or on the cluster, with its servers' statistics."""
    if request.param == "redis":
        backend, ports = from_url(redis_server.url + "/4"), [redis_server.port]
    else:
        backend, ports = from_url(redis_cluster.url), [n.port for n in redis_cluster.nodes]
    stats = ServerStats(ports)
    backend.get("warm-up")  # connect (and read the cluster's topology) before counting
    try:
        yield backend, stats
    finally:
        backend.close()
        stats.close()
