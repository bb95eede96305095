"""The backend operations tier logic asks for, one class each.

A step generator yields an operation; a driver makes it on the operation's tier (through
the tier's breaker and timeout) and sends the result back. :meth:`Op.apply` is the only
place an operation turns into a backend call, for sync and async backends alike (an async
backend's method returns an awaitable, which the async driver awaits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmcache._tiers.tier import Tier

__all__ = [
    "Clear",
    "Delete",
    "Get",
    "GetMany",
    "Op",
    "PutVectors",
    "SearchVectors",
    "Set",
    "SetMany",
    "TryLock",
    "Unlock",
    "Vectors",
]


@dataclass(slots=True)
class Op:
    """An operation on one tier's backend."""

    tier: Tier

    def apply(self, backend: Any) -> Any:
        """Call ``backend`` (the tier's, or the in-process store behind it) for this op."""
        raise NotImplementedError


@dataclass(slots=True)
class Get(Op):
    """Read one entry's bytes."""

    key: str

    def apply(self, backend: Any) -> Any:
        return backend.get(self.key)


@dataclass(slots=True)
class GetMany(Op):
    """Read many entries in one round trip; a list aligned with ``keys``."""

    keys: Sequence[str]

    def apply(self, backend: Any) -> Any:
        return backend.get_many(self.keys)


@dataclass(slots=True)
class Set(Op):
    """Write one entry, keeping its creation time."""

    key: str
    data: bytes
    ttl: float | None
    created: float

    def apply(self, backend: Any) -> Any:
        return backend.set(self.key, self.data, self.ttl, created=self.created)


@dataclass(slots=True)
class SetMany(Op):
    """Write entries that share a TTL and creation time."""

    items: Mapping[str, bytes]
    ttl: float | None
    created: float

    def apply(self, backend: Any) -> Any:
        return backend.set_many(self.items, self.ttl, created=self.created)


@dataclass(slots=True)
class Delete(Op):
    """Delete entries."""

    keys: Sequence[str]

    def apply(self, backend: Any) -> Any:
        return backend.delete(self.keys)


@dataclass(slots=True)
class Clear(Op):
    """Delete the entries matching a glob, optionally only those older than some seconds."""

    pattern: str
    older_than: float | None

    def apply(self, backend: Any) -> Any:
        return backend.clear(self.pattern, self.older_than)


@dataclass(slots=True)
class TryLock(Op):
    """Take a named lock for ``ttl`` seconds: a token, or ``None`` when another holds it."""

    name: str
    ttl: float

    def apply(self, backend: Any) -> Any:
        return backend.try_lock(self.name, self.ttl)


@dataclass(slots=True)
class Unlock(Op):
    """Release a lock this process holds."""

    name: str
    token: Any

    def apply(self, backend: Any) -> Any:
        return backend.unlock(self.name, self.token)


@dataclass(slots=True)
class Vectors(Op):
    """Ask whether the tier stores and searches vectors of ``dim`` numbers itself."""

    dim: int

    def apply(self, backend: Any) -> Any:
        return backend.vectors(self.dim)


@dataclass(slots=True)
class PutVectors(Op):
    """Store vectors beside their entries: ``(key, space, vector)`` items."""

    dim: int
    items: Sequence[tuple[str, str, list[float]]]

    def apply(self, backend: Any) -> Any:
        return backend.put_vectors(self.dim, self.items)


@dataclass(slots=True)
class SearchVectors(Op):
    """Find the ``k`` nearest vectors of a space at or above ``floor`` similarity, with
    their entries: ``(key, similarity, record)`` items."""

    dim: int
    space: str
    vector: list[float]
    k: int
    floor: float

    def apply(self, backend: Any) -> Any:
        return backend.search_vectors(self.dim, self.space, self.vector, self.k, self.floor)
