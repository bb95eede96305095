"""How ``clear`` works, written once for the four backends (sync/async, server/cluster).

The plan is a generator that yields the store operations it needs (:class:`Scan`,
:class:`Remove`, :class:`Members`, :class:`Prune`, :class:`Unlink`) and receives each
result; a backend drives it with blocking calls or awaits. Nothing here talks to Redis.

- By glob: ``SCAN MATCH`` in batches of ``batch`` keys, each batch removed with ``UNLINK``
  and its index members dropped in the same round trip. Never ``KEYS``, never ``FLUSHDB``.
  A whole namespace unlinks its index first, once, and then leaves it alone: an entry
  stored meanwhile is indexed afresh, and one the scan then removes leaves a member that
  pruning (or a later clear, whose ``UNLINK`` does not count it) drops.
- By age: read only the namespace's creation-time index, never the values. For a whole
  namespace, ``ZRANGEBYSCORE`` returns exactly the entries to remove, oldest first; with a
  narrower glob, one ``ZSCAN MATCH`` pass over the index picks members by glob on the
  server and by creation time here (a score range with a glob filter would have to skip
  the kept members again on every page).
- Everything (``clear()``): every ``llmcache:*`` key, the keys the "other" index knows, and
  the indexes themselves (so the batches leave the indexes alone). Other keys in the
  database are never touched.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from llmcache.backends import globs, namespace_glob

from .layout import (
    ALL_KEYS_GLOB,
    INDEX_GLOB,
    Index,
    bucket_of_index,
    index_of,
    is_internal,
    pattern_namespace,
)

__all__ = [
    "PRUNE_GRACE",
    "IndexScan",
    "Members",
    "Plan",
    "Prune",
    "Remove",
    "Scan",
    "Unlink",
    "clear_plan",
]

#: Index members are pruned this many seconds after their entry expired (clock skew margin).
PRUNE_GRACE = 1.0


@dataclass(frozen=True, slots=True)
class Scan:
    """One ``SCAN`` page; ``state`` is ``None`` at the start. Result: ``(state | None, keys)``,
    where a ``None`` state means the scan is complete."""

    match: str
    state: Any
    count: int


@dataclass(frozen=True, slots=True)
class Remove:
    """``UNLINK`` entries and, with ``unindex``, drop them from their indexes. Result: how
    many existed."""

    keys: list[bytes]
    unindex: bool = True


@dataclass(frozen=True, slots=True)
class Members:
    """The first ``count`` members of ``index.created`` in creation order, created at or
    before ``max_score`` (``None``: any time). Result: ``list[bytes]``."""

    index: Index
    max_score: float | None
    count: int


@dataclass(frozen=True, slots=True)
class IndexScan:
    """One ``ZSCAN`` page of ``index.created`` with ``MATCH``; ``state`` is ``None`` at the
    start. Result: ``(state | None, [(member, created), ...])``."""

    index: Index
    match: str
    state: Any
    count: int


@dataclass(frozen=True, slots=True)
class Prune:
    """Drop up to ``limit`` index members that expired before ``cutoff``. Result: how many."""

    index: Index
    cutoff: float
    limit: int


@dataclass(frozen=True, slots=True)
class Unlink:
    """``UNLINK`` internal keys (indexes). Result: how many existed."""

    keys: list[str]


Step = Scan | Remove | Members | IndexScan | Prune | Unlink
Plan = Generator[Step, Any, int]


def _text(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def clear_plan(pattern: str | None, older_than: float | None, batch: int) -> Plan:
    """Return the plan of ``clear(pattern, older_than)``; its result is the count removed."""
    if older_than is not None:
        return _by_age(pattern, time.time() - older_than, batch)
    if pattern is None:
        return _everything(batch)
    namespace = pattern_namespace(pattern)
    if namespace is not None and pattern == namespace_glob(namespace):
        return _whole_namespace(index_of(namespace), globs.to_redis(pattern), batch)
    return _by_glob(globs.to_redis(pattern), batch)


def _by_glob(match: str, batch: int, *, unindex: bool = True) -> Plan:
    removed = 0
    state = None
    while True:
        state, keys = yield Scan(match, state, batch)
        keys = [key for key in keys if not is_internal(key)]
        if keys:
            removed += yield Remove(keys, unindex)
        if state is None:
            return removed


def _whole_namespace(index: Index, match: str, batch: int) -> Plan:
    # the index goes first: whatever is stored during the clear is indexed afresh
    yield Unlink([index.created, index.expires])
    return (yield from _by_glob(match, batch, unindex=False))


def _buckets(batch: int) -> Generator[Step, Any, set[str | None]]:
    found: set[str | None] = set()
    state = None
    while True:
        state, keys = yield Scan(INDEX_GLOB, state, batch)
        found.update(bucket_of_index(_text(key)) for key in keys)
        if state is None:
            return found


def _everything(batch: int) -> Plan:
    removed = yield from _by_glob(globs.to_redis(ALL_KEYS_GLOB), batch, unindex=False)
    for bucket in (yield from _buckets(batch)):
        index = index_of(bucket)
        if bucket is None:
            # keys outside llmcache:* that this backend stored: only their index knows them
            removed += yield from _drain(index, None, batch)
        yield Unlink([index.created, index.expires])
    return removed


def _drain(index: Index, max_score: float | None, batch: int) -> Plan:
    """Remove every member created at or before ``max_score``, a page at a time."""
    removed = 0
    previous: list[bytes] = []
    while True:
        members = yield Members(index, max_score, batch)
        if not members or members == previous:  # the second: not ours to remove, stop
            return removed
        removed += yield Remove(members)
        previous = members


def _by_age(pattern: str | None, cutoff: float, batch: int) -> Plan:
    namespace = None if pattern is None else pattern_namespace(pattern)
    buckets = (yield from _buckets(batch)) if namespace is None else {namespace}
    whole = pattern is None or (namespace is not None and pattern == namespace_glob(namespace))
    removed = 0
    for bucket in buckets:
        index = index_of(bucket)
        while (yield Prune(index, time.time() - PRUNE_GRACE, batch)) >= batch:
            pass
        if whole:
            removed += yield from _drain(index, cutoff, batch)
            continue
        assert pattern is not None
        match = globs.to_redis(pattern)
        state = None
        while True:
            state, pairs = yield IndexScan(index, match, state, batch)
            doomed = [member for member, created in pairs if created <= cutoff]
            if doomed:
                removed += yield Remove(doomed)
            if state is None:
                break
    return removed
