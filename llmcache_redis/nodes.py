"""Failure isolation per node of a Redis Cluster, shared by the sync and asyncio backends.

One dead master must cost only its own keys, not the whole tier: the core's circuit
breaker watches the tier as a whole, so a failure is raised once (the core counts and logs
it) and the keys of that node are then misses, and their writes skipped, without waiting
on it, while every other node serves as usual. Meanwhile the topology is read again every
:data:`REFRESH_EVERY` seconds, so a replica promoted in its place is found quickly; every
:data:`RETRY_AFTER` seconds one call tries the node itself again.

Commands are also grouped per node here (:class:`Batches`), so that a write or a removal
that fails is known to have failed on one node, and the others' share still goes through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "REFRESH_EVERY",
    "RETRY_AFTER",
    "Batches",
    "NodeDown",
    "NodeHealth",
    "node_errors",
]

#: Seconds a failed node is skipped before one call tries it again.
RETRY_AFTER: Final = 0.5
#: Seconds between two topology reads while some node is marked down.
REFRESH_EVERY: Final = 0.25
#: Seconds every key is skipped after a node answered that the cluster is down.
CLUSTER_DOWN_FOR: Final = 0.25


class NodeDown(Exception):
    """Some keys could not be reached: their node is down (the others were served)."""


def node_errors() -> tuple[type[BaseException], ...]:
    """The redis-py errors that mean "this node cannot serve now"."""
    from redis.exceptions import ClusterDownError, SlotNotCoveredError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (
        RedisConnectionError,
        RedisTimeoutError,
        ClusterDownError,
        SlotNotCoveredError,
    )


@dataclass
class NodeHealth:
    """Which nodes are down, and when to look again; safe to share between threads."""

    down: dict[str, float] = field(default_factory=dict)  # node name -> time of next trial
    cluster_down_until: float = 0.0
    next_refresh: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def troubled(self) -> bool:
        """Whether any node is marked down, or the cluster said it is down (cheap)."""
        return bool(self.down) or self.cluster_down_until > 0.0

    def skip(self, name: str | None) -> bool:
        """Tell whether to leave out a call to node ``name``; let one trial through when due."""
        now = time.monotonic()
        if self.cluster_down_until:
            if now < self.cluster_down_until:
                return True
            self.cluster_down_until = 0.0
        if name is None or name not in self.down:
            return False
        with self._lock:
            retry_at = self.down.get(name)
            if retry_at is None:
                return False
            if now < retry_at:
                return True
            self.down[name] = now + RETRY_AFTER  # this caller is the trial; others wait
            return False

    def failed(self, name: str | None, exc: BaseException) -> None:
        """Record a failure of node ``name`` (``None``: the node is unknown)."""
        from redis.exceptions import ClusterDownError

        now = time.monotonic()
        if isinstance(exc, ClusterDownError):
            self.cluster_down_until = now + CLUSTER_DOWN_FOR
        elif name is not None:
            with self._lock:
                self.down[name] = now + RETRY_AFTER
        self.next_refresh = now  # a new failure: read the topology at the next skip

    def ok(self, name: str | None) -> None:
        """Record that node ``name`` answered."""
        if name is not None and name in self.down:
            with self._lock:
                self.down.pop(name, None)

    def refresh_due(self) -> bool:
        """Tell whether this caller should read the topology again now (one caller wins)."""
        now = time.monotonic()
        if not self.troubled or now < self.next_refresh:
            return False
        with self._lock:
            if now < self.next_refresh:
                return False
            self.next_refresh = now + REFRESH_EVERY
            return True

    def forget_except(self, masters: Iterable[str]) -> None:
        """Drop the marks of nodes that no longer serve any slot (replaced by a replica)."""
        keep = set(masters)
        with self._lock:
            for name in [n for n in self.down if n not in keep]:
                del self.down[name]


@dataclass(frozen=True, slots=True)
class _Command:
    args: tuple[Any, ...]
    options: dict[str, Any]


class Batches:
    """A stand-in for a pipeline that files each queued command under its target node.

    :func:`llmcache_redis.commands.queue_set` and its siblings queue onto it as onto a
    pipeline; :meth:`groups` then gives one batch per node, in the order first seen, with
    each command's position in the queue.
    """

    def __init__(self) -> None:
        self.commands: list[_Command] = []
        self._groups: dict[str | None, list[int]] = {}
        self._nodes: dict[str | None, Any] = {}

    def execute_command(self, *args: Any, **options: Any) -> None:
        """Queue one command (``options`` may name ``target_nodes``)."""
        node = options.get("target_nodes")
        name = getattr(node, "name", None)
        self._nodes.setdefault(name, node)
        self._groups.setdefault(name, []).append(len(self.commands))
        self.commands.append(_Command(args, options))

    def groups(self) -> list[tuple[str | None, list[int]]]:
        """``(node name, positions)`` per node; ``None`` where the node was not known."""
        return list(self._groups.items())

    def fill(self, pipe: Any, positions: list[int]) -> None:
        """Queue the commands at ``positions`` on a real cluster pipeline."""
        for i in positions:
            command = self.commands[i]
            pipe.execute_command(*command.args, **command.options)
