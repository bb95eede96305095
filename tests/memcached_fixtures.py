"""Real memcached servers for the memcached tier's tests: one server, and a 2-server pool.

Each server is a ``memcached`` process on a free 127.0.0.1 port (TCP only, 64 MiB), stopped
when its fixture ends. ``memcached_servers`` starts fresh servers for a single test, for
tests that kill one.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.servers import free_port, require_binary, wait_for_port

__all__ = [
    "MemcachedServer",
    "memcached_pool",
    "memcached_server",
    "memcached_servers",
    "pool_url",
]


@dataclass
class MemcachedServer:
    """One ``memcached`` process on 127.0.0.1."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``memcached://127.0.0.1:<port>``."""
        return f"memcached://{self.address}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        argv = [require_binary("memcached"), "-l", "127.0.0.1", "-p", str(self.port)]
        argv += ["-U", "0", "-m", "64", "-c", "1024"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # memcached refuses to run as root without -u
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill the server at once (SIGKILL, like a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stats(self) -> dict[str, int]:
        """Return the server's ``stats`` counters that are integers."""
        from pymemcache.client.base import Client

        client = Client(("127.0.0.1", self.port), connect_timeout=2, timeout=2)
        try:
            raw = client.stats()
        finally:
            client.close()
        stats = {}
        for name, value in raw.items():
            key = name.decode() if isinstance(name, bytes) else str(name)
            if isinstance(value, int):
                stats[key] = value
        return stats

    def items(self) -> int:
        """Return how many items the server holds now (``curr_items``)."""
        return self.stats()["curr_items"]


def pool_url(servers: list[MemcachedServer], query: str = "") -> str:
    """Return ``memcached://a:p1,b:p2[?query]`` for a pool of servers."""
    url = "memcached://" + ",".join(server.address for server in servers)
    return f"{url}?{query}" if query else url


def _start(count: int) -> list[MemcachedServer]:
    servers: list[MemcachedServer] = []
    try:
        for _ in range(count):
            server = MemcachedServer()
            server.start()
            servers.append(server)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    """One memcached server for the whole test session."""
    (server,) = _start(1)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def memcached_pool() -> Iterator[list[MemcachedServer]]:
    """Two memcached servers for the whole test session, used as one pool."""
    servers = _start(2)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def memcached_servers() -> Iterator[Callable[[int], list[MemcachedServer]]]:
    """Start fresh servers for one test (``memcached_servers(2)``); all stop after it."""
    started: list[MemcachedServer] = []

    def start(count: int) -> list[MemcachedServer]:
        servers = _start(count)
        started.extend(servers)
        return servers

    try:
        yield start
    finally:
        for server in started:
            server.stop()
