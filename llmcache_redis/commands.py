"""The commands each write queues on a pipeline, shared by the sync and asyncio backends.

Queueing a command on a redis-py pipeline is synchronous in both flavours; only
``execute()`` differs. A write therefore costs one round trip: the values and their age
index entries travel together (in ``MULTI``/``EXEC`` on one server, so that an entry and its
index entry appear or vanish together; per node on a cluster).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .clearing import PRUNE_GRACE
from .layout import PRUNE_SCRIPT, group_by_bucket, index_of

__all__ = ["NO_ROUTER", "Router", "milliseconds", "queue_set", "queue_unindex", "queue_unlink"]

#: Expired index members a write prunes besides two per key written, so that the index of
#: a namespace shrinks as fast as its entries expire without anyone calling ``clear``.
PRUNE_BUDGET = 100


def milliseconds(seconds: float) -> int:
    """A positive TTL in whole milliseconds, rounded up (``PX`` takes no fractions)."""
    return max(1, math.ceil(seconds * 1000))


class Router:
    """Where each command of a pipeline goes: on one server, nowhere in particular.

    A Redis Cluster's router (:class:`llmcache_redis.cluster.ClusterRouter`) names each
    command's node, which spares redis-py's cluster pipeline from finding the keys of every
    command again (and, for ``EVAL``, from asking a server with ``COMMAND GETKEYS``).
    """

    def slot(self, key: str | bytes) -> int | None:
        """The key's hash slot, or ``None`` where slots do not matter."""
        return None

    def options(self, key: str | bytes) -> dict[str, Any]:
        """Extra options for a command on ``key``."""
        return {}


NO_ROUTER = Router()


def queue_set(
    pipe: Any,
    items: Mapping[str, bytes],
    ttl: float | None,
    created: float | None,
    now: float,
    router: Router = NO_ROUTER,
) -> None:
    """Queue the values with their TTL, their age index entries, and a bounded prune."""
    # execute_command throughout: redis-py's helpers take no routing options, and its
    # cluster pipelines have no eval() at all
    ttl_args = () if ttl is None else ("PX", milliseconds(ttl))
    for key, value in items.items():
        # a SET without PX also drops an older TTL: forever is forever
        pipe.execute_command("SET", key, value, *ttl_args, **router.options(key))
    born = now if created is None else created
    for bucket, keys in group_by_bucket(items).items():
        index = index_of(bucket)
        to_index = router.options(index.created)  # both sets share a hash tag: one node
        pipe.execute_command("ZADD", index.created, *_scored(keys, born), **to_index)
        if ttl is None:
            pipe.execute_command("ZREM", index.expires, *keys, **to_index)
        else:
            pipe.execute_command("ZADD", index.expires, *_scored(keys, now + ttl), **to_index)
        limit = PRUNE_BUDGET + 2 * len(keys)
        cutoff = now - PRUNE_GRACE
        pipe.execute_command(
            "EVAL", PRUNE_SCRIPT, 2, index.created, index.expires, cutoff, limit, **to_index
        )


def _scored(members: Iterable[str], score: float) -> list[Any]:
    pairs: list[Any] = []
    for member in members:
        pairs += (score, member)
    return pairs


def queue_unlink(pipe: Any, keys: Iterable[str | bytes], router: Router = NO_ROUTER) -> int:
    """Queue ``UNLINK`` of ``keys``, one command per hash slot; return the command count.

    On one server there are no slots to respect: one command for all the keys.
    """
    groups: dict[int | None, list[str | bytes]] = {}
    for key in keys:
        groups.setdefault(router.slot(key), []).append(key)
    for members in groups.values():
        pipe.execute_command("UNLINK", *members, **router.options(members[0]))
    return len(groups)


def queue_unindex(pipe: Any, keys: Iterable[str | bytes], router: Router = NO_ROUTER) -> None:
    """Queue the removal of ``keys`` from their age indexes."""
    for bucket, members in group_by_bucket(keys).items():
        index = index_of(bucket)
        to_index = router.options(index.created)
        pipe.execute_command("ZREM", index.created, *members, **to_index)
        pipe.execute_command("ZREM", index.expires, *members, **to_index)
