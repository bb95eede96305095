"""A memcached pool of three real servers loses one under load, and gets it back.

The server is killed (SIGKILL) and started again, empty, on the same port 2 s later; a
client asks 60 warm questions round robin meanwhile (:func:`tests.distributed_runs.fault_run`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from llmcache.tools.simulator import Simulator
from llmcache_memcached.keys import entry_key
from llmcache_memcached.pool import ServerPool
from tests.distributed_runs import fault_run
from tests.memcached_fixtures import MemcachedServer, memcached_servers, pool_url

__all__ = ["memcached_servers"]

pytestmark = pytest.mark.slow

DOWN_FOR = 2.0


def _killed_for_a_while(server: MemcachedServer) -> Callable[[], None]:
    def fault() -> None:
        server.stop()
        time.sleep(DOWN_FOR)
        server.start()

    return fault


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_pool_moves_a_dead_servers_keys_and_takes_it_back(
    memcached_servers: Callable[[int], list[MemcachedServer]], sim: Simulator, is_async: bool
) -> None:
    servers = memcached_servers(3)
    victim = servers[0]
    ring = ServerPool([("127.0.0.1", s.port) for s in servers], timeout=1.0)
    marker = f"PROMPT-{uuid.uuid4().hex}"
    figures = fault_run(
        sim,
        pool_url(servers, "dead_timeout=0.5"),
        fault=_killed_for_a_while(victim),
        healthy=lambda: True,  # once the fault returns, the server is back
        affected=lambda key: ring.route(entry_key(key)).name == victim.address,
        is_async=is_async,
        marker=marker,
        after=2.0,
    )
    assert figures.affected
    assert figures.failed_calls == 0
    assert figures.wrong_answers == 0
    assert figures.hit_rate_during_unaffected == 1.0, figures.summary()
    # the dead server's questions moved: asked once upstream, then hits on another server;
    # once more when it is back, empty (which can come before the fault's start() returns);
    # and each call whose read failed went upstream too
    moved = [c for c in figures.during if c.index in figures.affected]
    assert sum(c.hit for c in moved) > len(moved) / 2, figures.summary()
    bound = 2 * len(figures.affected) + figures.errors_counted
    assert figures.upstream_during <= bound, figures.summary()
    # back, and serving: the last second is all hits again
    last = [c for c in figures.after if c.at > figures.healthy_at + 1.0]
    assert last
    assert all(c.hit for c in last), figures.summary()
    assert not [line for line in figures.logs if marker in line]
    assert len([line for line in figures.logs if "WARNING" in line]) <= 8, figures.logs
