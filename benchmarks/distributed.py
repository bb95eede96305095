"""The "distributed faults" table of RELIABILITY.md: failover, resharding, Sentinel, a pool.

Run from the repository's root (it needs ``redis-server``, ``redis-cli`` and ``memcached``)::

    python -m benchmarks.distributed                 # 3 runs per row, about 4 minutes
    python -m benchmarks.distributed --runs 1 --json figures.json

Each run starts its own servers on free loopback ports (the same fixtures the tests use,
:mod:`tests.distributed_fixtures`), inflicts one fault while a client (sync or asyncio)
asks 60 warm questions round robin, and measures it with :func:`tests.distributed_runs.fault_run`,
the code the tests assert on. The table gives the range over the runs of each row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmcache.tools.simulator import Simulator
from llmcache_redis import RedisClusterBackend
from tests.distributed_fixtures import (
    ReplicatedCluster,
    SentinelGroup,
    replicated_cluster,
    reshard,
    sentinel_group,
)
from tests.distributed_runs import Figures, fault_run
from tests.memcached_fixtures import MemcachedServer, pool_url

__all__ = ["main"]

RESHARD_SLOTS = 2000
MEMCACHED_DOWN_FOR = 2.0


def _slots(master: Any) -> set[int]:
    slots: set[int] = set()
    for line in master.cli("cluster", "nodes").splitlines():
        parts = line.split()
        if "myself" in parts[2]:
            for spec in parts[8:]:
                low, _, high = spec.partition("-")
                if low.isdigit():
                    slots.update(range(int(low), int(high or low) + 1))
    return slots


def cluster_failover(sim: Simulator, is_async: bool) -> Figures:
    """Kill (SIGKILL) one master of a 3+3 cluster; its replica takes over."""
    from redis.crc import key_slot

    cluster: ReplicatedCluster
    with replicated_cluster() as cluster:
        victim = cluster.masters()[0]
        slots = _slots(victim)
        return fault_run(
            sim,
            cluster.url,
            fault=victim.stop,
            healthy=cluster.healthy,
            settle=cluster.wait_replicated,
            affected=lambda key: key_slot(key.encode()) in slots,
            is_async=is_async,
        )


def cluster_reshard(sim: Simulator, is_async: bool) -> Figures:
    """Move 2,000 slots between two masters (``redis-cli --cluster reshard``) under load,
    and clear 2,000 entries by pattern while they move."""
    cluster: ReplicatedCluster
    with replicated_cluster() as cluster:
        raw = RedisClusterBackend(cluster.url)
        doomed = {f"llmcache:reshard:gone:{i}": b"x" for i in range(2000)}
        raw.set_many(doomed, None)

        def move() -> None:
            moving = reshard(cluster, RESHARD_SLOTS)
            try:
                time.sleep(0.5)
                raw.clear("llmcache:reshard:gone:*")
                moving.wait(timeout=120)
            finally:
                if moving.poll() is None:
                    moving.kill()

        figures = fault_run(
            sim,
            cluster.url,
            fault=move,
            healthy=cluster.healthy,
            settle=cluster.wait_replicated,
            is_async=is_async,
            after=1.0,
        )
        left = sum(v is not None for v in raw.get_many(list(doomed)))
        raw.close()
        figures.extra["cleared_entries_left"] = left
        return figures


def sentinel_failover(sim: Simulator, is_async: bool) -> Figures:
    """Kill (SIGKILL) the primary that three sentinels watch; they promote its replica."""
    group: SentinelGroup
    with sentinel_group() as group:
        old = group.primary()
        return fault_run(
            sim,
            group.url,
            fault=old.stop,
            healthy=lambda: group.promoted(old.port),
            settle=group.wait_replicated,
            is_async=is_async,
        )


@contextlib.contextmanager
def _memcached(count: int) -> Iterator[list[MemcachedServer]]:
    servers: list[MemcachedServer] = []
    try:
        for _ in range(count):
            server = MemcachedServer()
            server.start()
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            server.stop()


def memcached_pool(sim: Simulator, is_async: bool) -> Figures:
    """Kill one of three memcached servers for 2 s, then start it again (empty)."""
    from llmcache_memcached.keys import entry_key
    from llmcache_memcached.pool import ServerPool

    with _memcached(3) as servers:
        victim = servers[0]
        ring = ServerPool([("127.0.0.1", s.port) for s in servers], timeout=1.0)

        def fault() -> None:
            victim.stop()
            time.sleep(MEMCACHED_DOWN_FOR)
            victim.start()

        return fault_run(
            sim,
            pool_url(servers, "dead_timeout=0.5"),
            fault=fault,
            healthy=lambda: True,
            affected=lambda key: ring.route(entry_key(key)).name == victim.address,
            is_async=is_async,
            after=2.0,
        )


SCENARIOS: dict[str, tuple[str, Callable[[Simulator, bool], Figures]]] = {
    "cluster-failover": ("Redis Cluster 3+3: a master SIGKILLed", cluster_failover),
    "cluster-reshard": (
        f"Redis Cluster: {RESHARD_SLOTS} slots resharded, a clear meanwhile",
        cluster_reshard,
    ),
    "sentinel-failover": ("Redis Sentinel: the primary SIGKILLed", sentinel_failover),
    "memcached-pool": (
        f"memcached pool of 3: a server SIGKILLed, back after {MEMCACHED_DOWN_FOR:g} s",
        memcached_pool,
    ),
}


def _span(values: list[Any], fmt: str, none: str = "never") -> str:
    known = [v for v in values if v is not None]
    if not known:
        return none
    low, high = min(known), max(known)
    dash = "\u2013"  # an en dash, as in the other tables
    text = fmt.format(low) if low == high else f"{fmt.format(low)}{dash}{fmt.format(high)}"
    return text + (" (once never)" if len(known) < len(values) else "")


def table(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """The Markdown table of every row's range over its runs."""
    lines = [
        "| fault | client | runs | time to healthy | first hit after healthy | hit rate during "
        "(all / keys of live nodes) | hit rate after | upstream calls during | failed calls "
        "| wrong answers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per_client in results.items():
        title = SCENARIOS[name][0]
        for client, runs in per_client.items():
            col = {key: [run[key] for run in runs] for key in runs[0]}
            lines.append(
                f"| {title} | {client} | {len(runs)} "
                f"| {_span(col['healthy_after_s'], '{:.2f} s')} "
                f"| {_span(col['first_hit_after_healthy_s'], '{:.2f} s')} "
                f"| {_span(col['hit_rate_during'], '{:.3f}')} / "
                f"{_span(col['hit_rate_during_unaffected'], '{:.3f}', none='n/a')} "
                f"| {_span(col['hit_rate_after'], '{:.3f}')} "
                f"| {_span(col['upstream_during'], '{}')} "
                f"| {sum(col['failed_calls'])} | {sum(col['wrong_answers'])} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every scenario, sync and async, ``--runs`` times; print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    parser.add_argument("--runs", type=int, default=3, help="runs per row (default 3)")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args(argv)
    for binary in ("redis-server", "redis-cli", "memcached"):
        if shutil.which(binary) is None and not Path("/usr/bin", binary).exists():
            parser.error(f"{binary} is not installed")
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with Simulator() as sim:
        for name in args.only or SCENARIOS:
            run = SCENARIOS[name][1]
            for client, is_async in (("sync", False), ("async", True)):
                for i in range(args.runs):
                    sim.reset()
                    started = time.monotonic()
                    figures = run(sim, is_async)
                    summary = figures.summary() | figures.extra
                    results.setdefault(name, {}).setdefault(client, []).append(summary)
                    took = time.monotonic() - started
                    print(f"{name} {client} run {i + 1}: {json.dumps(summary)} ({took:.0f} s)")
    print()
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
