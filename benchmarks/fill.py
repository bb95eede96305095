"""Fill a tier with many realistic entries fast, through its backend's ``set_many``.

Every entry is the codec's encoding of the typical response under its own physical key.
Encoding a million entries one by one would take longer than writing them, so one entry is
encoded per creation time with a placeholder key of the same length, and each entry's bytes
are that template with its own key spliced in (the key appears once, in the envelope's
header, so the result is exactly what the codec would have written).

Keys are ``llmcache:<namespace>:s<NN>:v1-<32 hex digits>``: the logical key of a request
made with ``cache_key="s<NN>"``, NN being the entry number modulo 100. Scope ``s01`` is
created two hours ago (for clears by age); every other entry now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from llmcache._rules.keys import physical_key
from llmcache._tiers.codec import Codec, Entry

__all__ = ["OLD_AGE", "OLD_SCOPE", "FillResult", "Filler", "logical_key", "tier_backend"]

OLD_SCOPE = 1
OLD_AGE = 7200.0
SCOPES = 100


def tier_backend(client: Any, level: int = 0) -> Any:
    """Return the backend behind a client's tier (benchmark-only: written to directly)."""
    backend = client._tiers.tiers[level].backend
    return getattr(backend, "backend", backend)  # an async client's SyncToAsync wrapper


def logical_key(number: int) -> str:
    """Return the logical key of entry ``number``."""
    return f"s{number % SCOPES:02d}:v1-{number:032x}"


@dataclass(frozen=True)
class FillResult:
    """What a fill wrote and how long it took."""

    entries: int
    seconds: float
    complete: bool

    @property
    def rate(self) -> float:
        """Entries written per second."""
        return self.entries / self.seconds if self.seconds else 0.0


class Filler:
    """Build entries of ``payload`` for one namespace.

    :param namespace: the namespace of the physical keys.
    :param payload: the response payload every entry holds.
    """

    def __init__(self, namespace: str, payload: dict[str, Any], model: str) -> None:
        self.namespace = namespace
        self.now = time.time()
        codec = Codec()
        self._placeholder = physical_key(namespace, "s99:v1-" + "Z" * 32)
        self._templates = {
            age: codec.encode(
                Entry(self._placeholder, self.now - age, None, "response", payload, model, 120, 240)
            )
            for age in (0.0, OLD_AGE)
        }
        self._needle = self._placeholder.encode()

    def key(self, number: int) -> str:
        """Return the physical key of entry ``number``."""
        return physical_key(self.namespace, logical_key(number))

    @property
    def entry_size(self) -> int:
        """Bytes of one encoded entry."""
        return len(self._templates[0.0])

    def batches(self, start: int, stop: int, size: int) -> Iterator[tuple[dict[str, bytes], float]]:
        """Yield ``(items, created)`` batches of entries ``start`` to ``stop - 1``."""
        fresh, old = self._templates[0.0], self._templates[OLD_AGE]
        needle = self._needle
        for first in range(start, stop, size):
            new_items: dict[str, bytes] = {}
            old_items: dict[str, bytes] = {}
            for number in range(first, min(first + size, stop)):
                key = self.key(number)
                if number % SCOPES == OLD_SCOPE:
                    old_items[key] = old.replace(needle, key.encode(), 1)
                else:
                    new_items[key] = fresh.replace(needle, key.encode(), 1)
            if new_items:
                yield new_items, self.now
            if old_items:
                yield old_items, self.now - OLD_AGE

    def scoped(
        self, start: int, stop: int, scopes: set[int]
    ) -> Iterator[tuple[dict[str, bytes], float]]:
        """Yield the entries of ``scopes`` among entries ``start`` to ``stop - 1``."""
        fresh, old = self._templates[0.0], self._templates[OLD_AGE]
        needle = self._needle
        for scope in sorted(scopes):
            template = old if scope == OLD_SCOPE else fresh
            created = self.now - OLD_AGE if scope == OLD_SCOPE else self.now
            first = start + (scope - start) % SCOPES
            numbers = range(first, stop, SCOPES)
            for first in range(0, len(numbers), 5000):
                chunk = numbers[first : first + 5000]
                keys = [self.key(n) for n in chunk]
                yield {k: template.replace(needle, k.encode(), 1) for k in keys}, created

    def fill(
        self,
        set_many: Callable[..., None],
        count: int,
        *,
        start: int = 0,
        batch: int = 5000,
        budget: float | None = None,
    ) -> FillResult:
        """Write entries ``start`` to ``start + count - 1``; stop early past ``budget`` seconds.

        An early stop happens only at a multiple of 100 entries, so that every scope holds
        the same share.
        """
        began = time.perf_counter()
        written = 0
        step = max(batch, SCOPES) // SCOPES * SCOPES
        for first in range(start, start + count, step):
            last = min(first + step, start + count)
            for items, created in self.batches(first, last, step):
                set_many(items, None, created=created)
            written = last - start
            if budget is not None and time.perf_counter() - began > budget:
                break
        seconds = time.perf_counter() - began
        return FillResult(written, seconds, written >= count)
