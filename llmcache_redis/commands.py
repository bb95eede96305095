"""The commands each write queues on a pipeline, shared by the sync and asyncio backends.

Queueing a command on a redis-py pipeline is synchronous in both flavours; only
``execute()`` differs. A write therefore costs one round trip: the values and their age
index entries travel together (in ``MULTI``/``EXEC`` on one server, so that an entry and its
index entry appear or vanish together; per node on a cluster).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .clearing import PRUNE_GRACE
from .layout import PRUNE_SCRIPT, group_by_bucket, index_of

__all__ = ["milliseconds", "queue_set", "queue_unindex"]

#: Expired index members a write prunes besides two per key written, so that the index of
#: a namespace shrinks as fast as its entries expire without anyone calling ``clear``.
PRUNE_BUDGET = 100


def milliseconds(seconds: float) -> int:
    """A positive TTL in whole milliseconds, rounded up (``PX`` takes no fractions)."""
    return max(1, math.ceil(seconds * 1000))


def queue_set(
    pipe: Any,
    items: Mapping[str, bytes],
    ttl: float | None,
    created: float | None,
    now: float,
    route: Callable[[str], dict[str, Any]] | None = None,
) -> None:
    """Queue the values with their TTL, their age index entries, and a bounded prune.

    :param route: extra options for the prune script's command, given its first key (a
        cluster pipeline needs ``target_nodes``, or it asks a server where the keys are).
    """
    px = None if ttl is None else milliseconds(ttl)
    for key, value in items.items():
        pipe.set(key, value, px=px)  # a plain SET also drops an older TTL: forever is forever
    born = now if created is None else created
    for bucket, keys in group_by_bucket(items).items():
        index = index_of(bucket)
        pipe.zadd(index.created, dict.fromkeys(keys, born))
        if ttl is None:
            pipe.zrem(index.expires, *keys)
        else:
            pipe.zadd(index.expires, dict.fromkeys(keys, now + ttl))
        limit = PRUNE_BUDGET + 2 * len(keys)
        # execute_command: redis-py's cluster pipelines have no eval() of their own
        pipe.execute_command(
            "EVAL",
            PRUNE_SCRIPT,
            2,
            index.created,
            index.expires,
            now - PRUNE_GRACE,
            limit,
            **(route(index.created) if route is not None else {}),
        )


def queue_unindex(pipe: Any, keys: Iterable[str | bytes]) -> None:
    """Queue the removal of ``keys`` from their age indexes."""
    for bucket, members in group_by_bucket(keys).items():
        index = index_of(bucket)
        pipe.zrem(index.created, *members)
        pipe.zrem(index.expires, *members)
