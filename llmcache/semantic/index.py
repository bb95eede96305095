"""The in-process vector index of one partition: exact numpy search, HNSW when large.

Vectors are unit length, so similarity is a dot product. Up to :data:`HNSW_AT` vectors a
matrix product over all of them is exact and fast enough; above it, where the product grows
past a millisecond, an ``hnswlib`` graph answers in tens of microseconds (when ``hnswlib``
is installed; else the product goes on).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["HNSW_AT", "Member", "PartitionIndex"]

HNSW_AT = 50_000


@dataclass(slots=True)
class Member:
    """One indexed question.

    :param key: the logical key of the entry that answers it.
    :param text: the question.
    :param expires: Unix time its entry expires, or ``None``.
    """

    key: str
    text: str
    expires: float | None


class PartitionIndex:
    """The questions of one partition and their vectors (see the module docstring)."""

    def __init__(self, dim: int) -> None:
        import numpy as np

        self._np = np
        self.dim = dim
        self._vectors = np.zeros((16, dim), dtype=np.float32)
        self._members: list[Member | None] = []
        self._rows: dict[str, int] = {}
        self._graph: Any = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def add(self, member: Member, vector: Any) -> None:
        """Add (or replace) a question; ``vector`` is unit length, of this index's size."""
        np = self._np
        with self._lock:
            row = self._rows.get(member.key)
            if row is None:
                row = len(self._members)
                if row >= len(self._vectors):
                    grown = np.zeros((2 * len(self._vectors), self.dim), dtype=np.float32)
                    grown[:row] = self._vectors[:row]
                    self._vectors = grown
                self._members.append(member)
                self._rows[member.key] = row
            else:
                self._members[row] = member
            self._vectors[row] = vector
            if self._graph is not None:
                self._grow_graph(row + 1)
                self._graph.add_items(vector[None, :], [row], replace_deleted=False)
            elif len(self._rows) >= HNSW_AT:
                self._build_graph()

    def remove(self, key: str) -> None:
        """Forget a question (its entry is gone)."""
        with self._lock:
            row = self._rows.pop(key, None)
            if row is None:
                return
            self._members[row] = None
            self._vectors[row] = 0.0
            if self._graph is not None:
                self._graph.mark_deleted(row)

    def search(self, vector: Any, k: int, floor: float) -> list[tuple[float, Member]]:
        """Return up to ``k`` questions with similarity at least ``floor``, best first."""
        np = self._np
        with self._lock:
            count = len(self._members)
            if not self._rows:
                return []
            found = None
            if self._graph is not None:
                want = min(k, len(self._rows))
                try:
                    labels, distances = self._graph.knn_query(vector[None, :], k=want)
                except RuntimeError:  # fewer live neighbours reachable than asked for
                    pass
                else:
                    pairs = zip(labels[0], distances[0], strict=True)
                    found = [(1.0 - float(d), int(r)) for r, d in pairs]
            if found is None:
                scores = self._vectors[:count] @ vector
                top = np.argpartition(scores, -k)[-k:] if count > k else np.arange(count)
                found = [(float(scores[r]), int(r)) for r in top]
            members = self._members
            hits = [(s, members[r]) for s, r in found if s >= floor and members[r] is not None]
        hits.sort(key=lambda pair: -pair[0])
        return hits  # type: ignore[return-value]

    def _build_graph(self) -> None:
        try:
            import hnswlib
        except ImportError:  # the exact product goes on, slower at this size
            return
        count = len(self._members)
        graph = hnswlib.Index(space="ip", dim=self.dim)
        graph.init_index(max_elements=max(2 * count, HNSW_AT), ef_construction=100, M=16)
        graph.set_ef(64)
        graph.add_items(self._vectors[:count], list(range(count)))
        for row, member in enumerate(self._members):
            if member is None:
                graph.mark_deleted(row)
        self._graph = graph

    def _grow_graph(self, rows: int) -> None:
        if rows > self._graph.get_max_elements():
            self._graph.resize_index(2 * rows)
