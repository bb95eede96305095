"""The Redis Cluster backend, sync and asyncio twins.

What changes from one server:

- a hit is a ``GET`` packed by the backend and sent on a pooled connection of the master
  of its key's slot, as last read (redis-py's command path, which also parses the
  command for its keys, runs only for redirections, and while a node is troubled);
- multi-key reads are split by hash slot: an ``MGET`` per slot, all sent in one pipelined
  round trip to every master that holds some;
- writes and removals go through a cluster pipeline (one round trip per master, in
  parallel; no ``MULTI``: the index lives in another slot than the values), each command
  routed here to its node, with one ``UNLINK`` per slot;
- ``SCAN`` walks every master;
- ``RedisCluster`` reads the topology when it is built, so the client is built on first
  use, never by the constructor; it is read from any startup node that answers;
- a node that fails costs only its own keys (:mod:`llmcache_redis.nodes`): reads of its
  keys are misses and their writes are skipped until the topology, read again four times
  a second meanwhile, names a live master for its slots;
- a clear that ran while slots were migrating runs again (:data:`CLEAR_PASSES`), since a
  key moving between two masters can slip between the ``SCAN`` of each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Final

from .backend import AsyncRedisBackend, RedisBackend
from .clearing import Scan, clear_plan
from .commands import Router, queue_set, queue_unindex, queue_unlink
from .layout import lock_key
from .nodes import Batches, NodeDown, NodeHealth, node_errors
from .scrub import aexecute, execute, scrubbed
from .urls import RedisURL
from .wire import pack_get, write_now

__all__ = [
    "CLEAR_PASSES",
    "NO_LOCK",
    "AsyncRedisClusterBackend",
    "ClusterRouter",
    "RedisClusterBackend",
]

#: Most passes of one clear while slots keep migrating under it.
CLEAR_PASSES: Final = 10
#: The token of a lock not taken because its node is down: the caller goes ahead
#: without one (single-flight across processes is an optimisation, never a wait on a
#: dead node), and unlocking it does nothing.
NO_LOCK: Final = "-"
_REDIRECTED: Final = object()  # a fast read's answer that redis-py's path must handle


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
    _health: NodeHealth
    _errors: tuple[type[BaseException], ...]

    def _watch_nodes(self) -> None:
        from redis.crc import key_slot
        from redis.exceptions import ResponseError

        self._health = NodeHealth()
        self._errors = node_errors()
        self._key_slot = key_slot
        self._redirected: type[BaseException] = ResponseError

    def _master(self, client: Any, key: str) -> Any:
        """The master of ``key``'s slot as last read; ``None`` before the topology is."""
        try:
            return client.nodes_manager.slots_cache[self._key_slot(key.encode())][0]
        except (KeyError, IndexError, TypeError, AttributeError):
            return None

    @staticmethod
    def _node_name(client: Any, key: str | bytes) -> str | None:
        """The name (``host:port``) of the master of ``key``'s slot, as last read."""
        from redis.crc import key_slot

        try:
            node = client.nodes_manager.get_node_from_slot(
                key_slot(key.encode() if isinstance(key, str) else key)
            )
        except Exception:  # topology not read yet, or the slot is not covered
            return None
        return node.name  # type: ignore[no-any-return]

    def _group(self, client: Any, keys: Sequence[str]) -> dict[str | None, list[int]]:
        groups: dict[str | None, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(self._node_name(client, key), []).append(i)
        return groups

    def _refreshed(self, client: Any) -> None:
        """After a topology read: forget the marks of nodes that serve no slot any more."""
        slots = client.nodes_manager.slots_cache
        self._health.forget_except({nodes[0].name for nodes in slots.values() if nodes})

    @staticmethod
    def _layout(nodes: dict[str, Any]) -> tuple[Any, ...]:
        """What ``CLUSTER NODES`` says of slot ownership and migrations (parsed by redis-py)."""
        return tuple(
            sorted(
                (info["node_id"], str(info["slots"]), str(info["migrations"]))
                for info in nodes.values()
                if "master" in info["flags"]
            )
        )

    @staticmethod
    def _settled(before: tuple[Any, ...], after: tuple[Any, ...]) -> bool:
        return before == after and all(migrations == "[]" for _, _, migrations in after)

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

    def __init__(self, url: str | RedisURL, *, timeout: float = 1.0) -> None:
        super().__init__(url, timeout=timeout)
        self._watch_nodes()

    def get(self, key: str) -> bytes | None:
        client = self._redis or self.client
        node = None if self._health.troubled else self._master(client, key)
        if node is not None and node.redis_connection is not None:
            pool = node.redis_connection.connection_pool
            try:
                connection = pool.get_connection()  # connects a new connection
            except self._errors as exc:
                self._health.failed(node.name, exc)
                raise
            try:
                connection.send_packed_command((pack_get(key),))
                value = connection.read_response()
            except self._errors as exc:
                self._health.failed(node.name, exc)
                raise
            except self._redirected:  # MOVED, ASK, TRYAGAIN: redis-py's path follows them
                value = _REDIRECTED
            finally:
                pool.release(connection)
            if value is not _REDIRECTED:
                return value  # type: ignore[no-any-return]
        return self._routed_get(client, key)

    # redis-py's own path: it knows each key's node and follows the cluster's redirections

    def _routed_get(self, client: Any, key: str) -> bytes | None:
        name = None
        if self._health.troubled:
            name = self._node_name(client, key)
            if self._skip(client, name):
                name = self._node_name(client, key)  # the topology may have been read again
                if self._health.skip(name):
                    return None
        try:
            value = client.get(key)
        except self._errors as exc:
            self._health.failed(name or self._node_name(client, key), exc)
            raise
        self._health.ok(name)
        return value  # type: ignore[no-any-return]

    def _skip(self, client: Any, name: str | None) -> bool:
        """Tell whether node ``name`` is down; read the topology again when that is due."""
        health = self._health
        if not health.skip(name):
            return False
        if health.refresh_due():
            try:
                client.nodes_manager.initialize()
            except Exception:  # no node answered yet: the next one tries again
                pass
            else:
                self._refreshed(client)
        return True

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        client = self._redis or self.client
        if not self._health.troubled:
            try:
                return client.mget_nonatomic(keys)  # type: ignore[no-any-return]
            except self._errors:
                pass  # find out which node failed, and serve the others
        values: list[bytes | None] = [None] * len(keys)
        error: BaseException | None = None
        answered = False
        for name, positions in self._group(client, keys).items():
            if self._skip(client, name):
                continue
            try:
                replies = client.mget_nonatomic([keys[i] for i in positions])
            except self._errors as exc:
                self._health.failed(name, exc)
                error = exc
                continue
            self._health.ok(name)
            answered = True
            for i, value in zip(positions, replies, strict=True):
                values[i] = value
        if error is not None and not answered:
            raise error
        return values

    def _send(self, client: Any, batches: Batches, *, strict: bool) -> list[Any]:
        """Run each node's share of ``batches`` as its own pipeline; align the replies.

        A node that is down is skipped, one that fails is marked down; the other nodes'
        commands go through either way. Then the failure is raised, or with ``strict`` (a
        removal) a :class:`NodeDown` for commands that could not be sent.
        """
        results: list[Any] = [0] * len(batches.commands)
        error: BaseException | None = None
        skipped = []
        for name, positions in batches.groups():
            if self._skip(client, name):
                skipped.append(name)
                continue
            pipe = client.pipeline()
            batches.fill(pipe, positions)
            try:
                replies = execute(pipe)
            except self._errors as exc:
                self._health.failed(name, exc)
                error = scrubbed(exc)
                continue
            self._health.ok(name)
            for i, reply in zip(positions, replies, strict=True):
                results[i] = reply
        if error is not None:
            raise error
        if strict and skipped:
            raise NodeDown(f"not removed from {', '.join(map(str, skipped))}: node down")
        return results

    def set_many(self, items: Any, ttl: float | None, *, created: float | None = None) -> None:
        if not items:
            return
        if ttl is not None and ttl <= 0:
            self.delete(list(items))
            return
        client = self.client
        batches = Batches()
        queue_set(batches, items, ttl, created, time.time(), self._router(client))
        self._send(client, batches, strict=False)

    def _remove(self, keys: Sequence[str | bytes], *, unindex: bool = True) -> int:
        client = self.client
        router = self._router(client)
        batches = Batches()
        counted = queue_unlink(batches, keys, router)
        if unindex:
            queue_unindex(batches, keys, router)
        return sum(self._send(client, batches, strict=True)[:counted])

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        removed = 0
        for _ in range(CLEAR_PASSES):
            before = self._slot_layout()
            removed += self._run(clear_plan(pattern, older_than, self.url.batch_size))
            if self._settled(before, self._slot_layout()):
                break
        return removed

    def _slot_layout(self) -> tuple[Any, ...]:
        client = self.client
        layout: list[Any] = []
        for node in client.get_primaries():
            layout += self._layout(client.execute_command("CLUSTER NODES", target_nodes=node))
        return tuple(sorted(set(layout)))

    def try_lock(self, name: str, ttl: float) -> str | None:
        client = self.client
        key = lock_key(name)
        node = None
        if self._health.troubled:
            node = self._node_name(client, key)
            if self._skip(client, node):
                return NO_LOCK
        try:
            return super().try_lock(name, ttl)
        except self._errors as exc:
            self._health.failed(node or self._node_name(client, key), exc)
            raise

    def unlock(self, name: str, token: str) -> None:
        client = self.client
        key = lock_key(name)
        if token == NO_LOCK or (
            self._health.troubled and self._skip(client, self._node_name(client, key))
        ):
            return
        try:
            super().unlock(name, token)
        except self._errors as exc:
            self._health.failed(self._node_name(client, key), exc)
            raise

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

    # A hit's own read keeps to the timeout (connect, write and read each bounded by it);
    # redis-py's path, which may retry and re-route within one call, runs under a timeout
    # of the backend's (see get).
    awaits = "bounded-reads"

    def __init__(self, url: str | RedisURL, *, timeout: float = 1.0) -> None:
        super().__init__(url, timeout=timeout)
        self._watch_nodes()

    async def get(self, key: str) -> bytes | None:
        client = self.client
        node = None if self._health.troubled else self._master(client, key)
        if node is not None:
            try:
                connection = node.acquire_connection()
            except Exception:  # every connection of the node is busy: redis-py's path
                connection = None
            if connection is not None:
                request = pack_get(key)
                try:
                    if connection.should_reconnect():
                        await connection.disconnect()
                    if not write_now(connection, request):
                        await connection.send_packed_command((request,))
                    value = await connection.read_response()
                except self._errors as exc:
                    self._health.failed(node.name, exc)
                    raise
                except self._redirected:  # MOVED, ASK, TRYAGAIN: redis-py's path follows
                    value = _REDIRECTED
                finally:
                    node.release(connection)
                if value is not _REDIRECTED:
                    return value  # type: ignore[no-any-return]
        async with asyncio.timeout(self.timeout):
            return await self._routed_get(client, key)

    async def _routed_get(self, client: Any, key: str) -> bytes | None:
        name = None
        if self._health.troubled:
            name = self._node_name(client, key)
            if await self._skip(client, name):
                name = self._node_name(client, key)
                if self._health.skip(name):
                    return None
        try:
            value = await client.get(key)
        except self._errors as exc:
            self._health.failed(name or self._node_name(client, key), exc)
            raise
        self._health.ok(name)
        return value  # type: ignore[no-any-return]

    async def _skip(self, client: Any, name: str | None) -> bool:
        health = self._health
        if not health.skip(name):
            return False
        if health.refresh_due():
            try:
                await client.nodes_manager.initialize()
            except Exception:  # no node answered yet: the next one tries again
                pass
            else:
                self._refreshed(client)
        return True

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        client = self.client
        if not self._health.troubled:
            try:
                return await client.mget_nonatomic(keys)  # type: ignore[no-any-return]
            except self._errors:
                pass
        values: list[bytes | None] = [None] * len(keys)
        error: BaseException | None = None
        answered = False
        for name, positions in self._group(client, keys).items():
            if await self._skip(client, name):
                continue
            try:
                replies = await client.mget_nonatomic([keys[i] for i in positions])
            except self._errors as exc:
                self._health.failed(name, exc)
                error = exc
                continue
            self._health.ok(name)
            answered = True
            for i, value in zip(positions, replies, strict=True):
                values[i] = value
        if error is not None and not answered:
            raise error
        return values

    async def _send(self, client: Any, batches: Batches, *, strict: bool) -> list[Any]:
        """The asyncio twin of :meth:`RedisClusterBackend._send`."""
        results: list[Any] = [0] * len(batches.commands)
        error: BaseException | None = None
        skipped = []
        for name, positions in batches.groups():
            if await self._skip(client, name):
                skipped.append(name)
                continue
            pipe = client.pipeline()
            batches.fill(pipe, positions)
            try:
                replies = await aexecute(pipe)
            except self._errors as exc:
                self._health.failed(name, exc)
                error = scrubbed(exc)
                continue
            self._health.ok(name)
            for i, reply in zip(positions, replies, strict=True):
                results[i] = reply
        if error is not None:
            raise error
        if strict and skipped:
            raise NodeDown(f"not removed from {', '.join(map(str, skipped))}: node down")
        return results

    async def set_many(
        self, items: Any, ttl: float | None, *, created: float | None = None
    ) -> None:
        if not items:
            return
        if ttl is not None and ttl <= 0:
            await self.delete(list(items))
            return
        client = self.client
        batches = Batches()
        queue_set(batches, items, ttl, created, time.time(), self._router(client))
        await self._send(client, batches, strict=False)

    async def _remove(self, keys: Sequence[str | bytes], *, unindex: bool = True) -> int:
        client = self.client
        router = self._router(client)
        batches = Batches()
        counted = queue_unlink(batches, keys, router)
        if unindex:
            queue_unindex(batches, keys, router)
        return sum((await self._send(client, batches, strict=True))[:counted])

    async def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        removed = 0
        for _ in range(CLEAR_PASSES):
            before = await self._slot_layout()
            removed += await super().clear(pattern, older_than)
            if self._settled(before, await self._slot_layout()):
                break
        return removed

    async def _slot_layout(self) -> tuple[Any, ...]:
        client = self.client
        await client.initialize()  # get_primaries() needs the topology read
        layout: list[Any] = []
        for node in client.get_primaries():
            nodes = await client.execute_command("CLUSTER NODES", target_nodes=node)
            layout += self._layout(nodes)
        return tuple(sorted(set(layout)))

    async def try_lock(self, name: str, ttl: float) -> str | None:
        client = self.client
        key = lock_key(name)
        node = None
        if self._health.troubled:
            node = self._node_name(client, key)
            if await self._skip(client, node):
                return NO_LOCK
        try:
            return await super().try_lock(name, ttl)
        except self._errors as exc:
            self._health.failed(node or self._node_name(client, key), exc)
            raise

    async def unlock(self, name: str, token: str) -> None:
        client = self.client
        key = lock_key(name)
        if token == NO_LOCK or (
            self._health.troubled and await self._skip(client, self._node_name(client, key))
        ):
            return
        try:
            await super().unlock(name, token)
        except self._errors as exc:
            self._health.failed(self._node_name(client, key), exc)
            raise

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
