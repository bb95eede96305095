"""Redis Cluster tiers through what a cluster does: failover, dead seeds, no node at all.

A real cluster of 3 masters and 3 replicas (``cluster-node-timeout 1000``) is started for
this module (:mod:`tests.distributed_fixtures`); the tests kill its masters, so it is
nobody else's. Each failover kills a master that still has a replica, with a client
asking 60 warm questions round robin (:func:`tests.distributed_runs.fault_run`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from redis.crc import key_slot

from llmcache import CachedClient
from llmcache.tools.simulator import Simulator
from tests.distributed_fixtures import ReplicatedCluster, replicated_cluster, reshard
from tests.distributed_runs import LogCapture, fault_run, questions
from tests.redis_fixtures import start_redis_cluster
from tests.servers import free_port

pytestmark = pytest.mark.slow

RECOVERY_LIMIT = 2.0  # hits resume within this long of the cluster being healthy


@pytest.fixture(scope="module")
def cluster() -> Iterator[ReplicatedCluster]:
    with replicated_cluster() as started:
        yield started


def _slots_of(cluster: ReplicatedCluster, master: Any) -> set[int]:
    slots: set[int] = set()
    for line in master.cli("cluster", "nodes").splitlines():
        parts = line.split()
        if "myself" in parts[2]:
            for spec in parts[8:]:
                low, _, high = spec.partition("-")
                if low.isdigit():
                    slots.update(range(int(low), int(high or low) + 1))
    return slots


def _client(sim: Simulator, url: str, **options: Any) -> Any:
    wrapped = OpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0)
    return CachedClient(wrapped, tiers=[url], **options)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_cluster_failover_keeps_live_masters_hitting_and_serves_the_promoted_replica(
    cluster: ReplicatedCluster, sim: Simulator, is_async: bool
) -> None:
    victim = next(m for m in cluster.masters() if _has_replica(cluster, m))
    slots = _slots_of(cluster, victim)
    marker = f"PROMPT-{uuid.uuid4().hex}"
    figures = fault_run(
        sim,
        cluster.url,
        fault=victim.stop,
        healthy=cluster.healthy,
        settle=cluster.wait_replicated,
        affected=lambda key: key_slot(key.encode()) in slots,
        is_async=is_async,
        marker=marker,
    )
    assert figures.affected, "no question lives on the killed master"
    assert figures.failed_calls == 0
    assert figures.wrong_answers == 0
    # the two live masters' keys never stopped hitting: no tier-wide breaker
    assert figures.hit_rate_during_unaffected == 1.0
    first = figures.first_hit_after
    assert first is not None, figures.summary()
    assert first <= RECOVERY_LIMIT, figures.summary()
    # entries written before the kill are served by the promoted replica: every
    # question of the killed master hits again, none had to be asked upstream again
    settled = [c for c in figures.after if c.at > figures.healthy_at + RECOVERY_LIMIT]
    assert settled
    assert all(c.hit for c in settled), figures.summary()
    assert {c.index for c in settled} >= figures.affected
    # one node's failure is logged a few times, never every call, never with user content
    assert not [line for line in figures.logs if marker in line]
    assert len([line for line in figures.logs if "WARNING" in line]) <= 5, figures.logs
    # and a client built now, from the same URL (the dead node is still first in it for
    # one of the two runs), serves every entry
    fresh = _client(sim, cluster.url, namespace="faults")
    try:
        assert all(fresh.chat.completions.create(**q).cache_hit for q in questions(60, marker))
    finally:
        fresh.close()


def _has_replica(cluster: ReplicatedCluster, master: Any) -> bool:
    try:
        cluster.replica_of(master)
    except LookupError:
        return False
    return True


def test_seed_list_starting_with_dead_nodes_serves_from_the_live_ones(
    cluster: ReplicatedCluster, sim: Simulator
) -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    live = [f"127.0.0.1:{n.port}" for n in cluster.live()]
    url = "redis+cluster://" + ",".join(dead + live)
    asked = questions(30, "seeds")
    writer = _client(sim, url, namespace="seeds")
    reader = _client(sim, url, namespace="seeds")
    try:
        for q in asked:
            writer.chat.completions.create(**q)
        assert all(reader.chat.completions.create(**q).cache_hit for q in asked)
        assert writer.stats().errors == reader.stats().errors == 0
    finally:
        writer.close()
        reader.close()


def test_no_reachable_node_fails_open_logs_once_and_resumes_when_a_node_answers(
    sim: Simulator,
) -> None:
    ports = [free_port() for _ in range(3)]
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
    client = _client(sim, url, namespace="late", recovery_time=0.3)
    asked = questions(5, "late")
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-redis-late-"))
    try:
        with LogCapture() as logs:
            for _ in range(4):  # several breaker trials' worth of failures
                for q in asked:
                    assert not client.chat.completions.create(**q).cache_hit
                time.sleep(0.35)
        warnings = [line for line in logs.lines if line.startswith("llmcache WARNING")]
        assert len(warnings) == 1, logs.lines
        assert not [line for line in logs.lines if "late question" in line]
        assert "L1:redis-cluster" in warnings[0]
        assert client.stats().errors >= 2
        late = start_redis_cluster(workdir, ports)
        try:
            deadline = time.monotonic() + 10
            hits = 0
            while time.monotonic() < deadline and hits < len(asked):
                hits = sum(client.chat.completions.create(**q).cache_hit for q in asked)
                time.sleep(0.1)
            assert hits == len(asked)
        finally:
            late.stop()
    finally:
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_resharding_under_load_loses_no_hit_and_a_clear_still_removes_every_match(
    cluster: ReplicatedCluster, sim: Simulator, is_async: bool
) -> None:
    from llmcache_redis import RedisClusterBackend

    doomed = {f"llmcache:reshard:gone:{i}": b"x" for i in range(2000)}
    kept = {f"llmcache:reshard:kept:{i}": b"x" for i in range(200)}
    raw = RedisClusterBackend(cluster.url)
    raw.set_many({**doomed, **kept}, None)
    cleared: list[int | None] = []

    def move_slots_and_clear() -> None:
        moving = reshard(cluster, 2000)
        try:
            time.sleep(0.5)  # while slots migrate
            # small SCAN pages: the clear walks the masters for as long as keys move
            admin = _client(sim, cluster.url + "?batch_size=10", namespace="reshard")
            try:
                cleared.append(admin.clear_cache(key="gone:*"))
            finally:
                admin.close()
            assert moving.wait(timeout=60) == 0
        finally:
            if moving.poll() is None:
                moving.kill()

    try:
        figures = fault_run(
            sim,
            cluster.url,
            fault=move_slots_and_clear,
            healthy=cluster.healthy,
            settle=cluster.wait_replicated,
            is_async=is_async,
            after=1.0,
            marker="PROMPT-reshard",
        )
        assert not [line for line in figures.logs if "PROMPT-reshard" in line]
        assert figures.failed_calls == 0
        assert figures.wrong_answers == 0
        assert figures.hit_rate_during == 1.0, figures.summary()
        assert figures.errors_counted == 0, figures.logs
        assert cleared == [len(doomed)]
        assert raw.get_many(list(doomed)) == [None] * len(doomed)
        assert raw.get_many(list(kept)) == [b"x"] * len(kept)
    finally:
        raw.clear("llmcache:reshard:*")
        raw.close()
