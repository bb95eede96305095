"""The Redis Cluster backend, sync and asyncio twins.

What changes from one server:

- multi-key reads are split by hash slot: an ``MGET`` per slot, all sent in one pipelined
  round trip to every master that holds some;
- writes and removals go through a cluster pipeline (one round trip per master, in
  parallel; no ``MULTI``: the index lives in another slot than the values), each command
  routed here to its node, with one ``UNLINK`` per slot;
- ``SCAN`` walks every master;
- ``RedisCluster`` reads the topology when it is built, so the client is built on first
  use, never by the constructor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backend import AsyncRedisBackend, RedisBackend
from .clearing import Scan
from .commands import Router

__all__ = ["AsyncRedisClusterBackend", "ClusterRouter", "RedisClusterBackend"]


class ClusterRouter(Router):
    """Send each command of a cluster pipeline straight to the master of its key's slot.

    redis-py's cluster pipeline would otherwise work out every command's keys again (and
    for ``EVAL`` ask a server, ``COMMAND GETKEYS``, one more round trip per write); naming
    the node halves the client's cost of a pipelined command.
    """

    def __init__(self, client: Any) -> None:
        from redis.crc import key_slot

        self._key_slot = key_slot
        self._nodes = client.nodes_manager

    def slot(self, key: str | bytes) -> int:
        return self._key_slot(key.encode() if isinstance(key, str) else key)  # type: ignore[no-any-return]

    def options(self, key: str | bytes) -> dict[str, Any]:
        try:
            node = self._nodes.get_node_from_slot(self.slot(key))
        except Exception:  # topology not read yet (asyncio: on first use): redis-py routes
            return {}
        return {"target_nodes": node}


class _ClusterLayout:
    """The cluster specifics shared by the sync and async twins."""

    cluster = True

    def _pipeline(self, client: Any) -> Any:
        return client.pipeline()

    def _router(self, client: Any) -> Router:
        return ClusterRouter(client)

    @staticmethod
    def _first_page(step: Scan) -> dict[str, Any]:
        return {"match": step.match, "count": step.count}  # SCAN goes to every primary

    @staticmethod
    def _pending(cursors: dict[str, int]) -> dict[str, int] | None:
        return {name: cursor for name, cursor in cursors.items() if cursor} or None


class RedisClusterBackend(_ClusterLayout, RedisBackend):
    """A cache tier on a Redis Cluster, for sync clients.

    :param url: ``redis+cluster://host:port[,host:port...]`` (or ``rediss+cluster://``);
        the nodes are startup nodes, the rest of the cluster is discovered.
    :param timeout: seconds allowed for each connect, read and write.
    """

    # redis-py's own path: it knows each key's node and follows the cluster's redirections

    def get(self, key: str) -> bytes | None:
        return (self._redis or self.client).get(key)  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return (self._redis or self.client).mget_nonatomic(keys)  # type: ignore[no-any-return]

    def _scan(self, client: Any, step: Scan) -> tuple[Any, list[bytes]]:
        if step.state is None:
            cursors, keys = client.scan(**self._first_page(step))
            return self._pending(cursors), keys
        cursors, keys = {}, []
        for name, cursor in step.state.items():
            node = client.get_node(node_name=name)
            page_cursors, page = client.scan(
                cursor=cursor, match=step.match, count=step.count, target_nodes=node
            )
            cursors.update(page_cursors)
            keys += page
        return self._pending(cursors), keys


class AsyncRedisClusterBackend(_ClusterLayout, AsyncRedisBackend):
    """A cache tier on a Redis Cluster, for asyncio clients.

    :param url: ``redis+cluster://host:port[,host:port...]``.
    :param timeout: seconds allowed for each connect, read and write.
    """

    awaits = "task"  # redis-py's cluster client may retry and re-route within one call

    async def get(self, key: str) -> bytes | None:
        return await self.client.get(key)  # type: ignore[no-any-return]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return await self.client.mget_nonatomic(keys)  # type: ignore[no-any-return]

    async def _scan(self, client: Any, step: Scan) -> tuple[Any, list[bytes]]:
        if step.state is None:
            cursors, keys = await client.scan(**self._first_page(step))
            return self._pending(cursors), keys
        cursors, keys = {}, []
        for name, cursor in step.state.items():
            node = client.get_node(node_name=name)
            page_cursors, page = await client.scan(
                cursor=cursor, match=step.match, count=step.count, target_nodes=node
            )
            cursors.update(page_cursors)
            keys += page
        return self._pending(cursors), keys
