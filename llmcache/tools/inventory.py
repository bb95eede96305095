"""What a cache store holds, for ``llmcache stats`` and ``llmcache clear``.

A store is opened from a tier URL exactly as a client would open it (the same plugins and
URL options). Stores that can list their keys (``supports_scan``: memory, SQL, Redis) are
summarised per namespace: entries, bytes and ages. A store that cannot (memcached) is asked
for its server counters if its backend offers ``server_stats()``; otherwise the report says
that it cannot list.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcache._plugins import get_registry
from llmcache._rules.keys import KEY_PREFIX, physical_key, split_physical_key
from llmcache._tiers.tier import Tier, build_tiers
from llmcache.backends import globs
from llmcache.backends.urls import redact

__all__ = [
    "AGE_BUCKETS",
    "NamespaceSummary",
    "StoreReport",
    "clear_pattern",
    "inspect_store",
    "open_store",
]

HOUR = 3600.0
DAY = 86400.0
AGE_BUCKETS = ("<1h", "<1d", "older", "unknown")


def open_store(url: str, *, timeout: float = 5.0) -> Tier:
    """Open the tier a URL names, as a sync client would (no connection is made yet).

    :raises ConfigError: the URL is malformed, its scheme unknown, or its extra missing.
    """
    return build_tiers(
        [url],
        get_registry(),
        is_async=False,
        timeout=timeout,
        failure_threshold=3,
        recovery_time=5,
    )[0]


def clear_pattern(namespace: str | None, key: str | None = None) -> str:
    """Return the physical-key glob that ``clear`` uses.

    :param namespace: one namespace, or ``None`` for every namespace.
    :param key: a glob over logical keys (``None``: every key).
    """
    if namespace is None:
        return f"{KEY_PREFIX}:*"
    return globs.escape(physical_key(namespace, "")) + (key if key is not None else "*")


@dataclass
class NamespaceSummary:
    """Entries, bytes and ages of one namespace (or of a whole store)."""

    namespace: str
    entries: int = 0
    bytes: int = 0
    no_expiry: int = 0
    ages: list[float] = field(default_factory=list, repr=False)
    buckets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGE_BUCKETS, 0))

    def add(self, size: int, age: float | None, expires: float | None) -> None:
        """Count one stored entry."""
        self.entries += 1
        self.bytes += size
        self.no_expiry += expires is None
        if age is None:
            self.buckets["unknown"] += 1
            return
        self.ages.append(age)
        self.buckets["<1h" if age < HOUR else "<1d" if age < DAY else "older"] += 1

    def merge(self, other: NamespaceSummary) -> None:
        """Add another summary's counts to this one."""
        self.entries += other.entries
        self.bytes += other.bytes
        self.no_expiry += other.no_expiry
        self.ages.extend(other.ages)
        for name, count in other.buckets.items():
            self.buckets[name] += count

    def age(self) -> dict[str, float] | None:
        """Return the min, median and max age in seconds, or ``None`` if no age is known."""
        if not self.ages:
            return None
        return {
            "min": min(self.ages),
            "median": statistics.median(self.ages),
            "max": max(self.ages),
        }

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain data."""
        return {
            "entries": self.entries,
            "bytes": self.bytes,
            "no_expiry": self.no_expiry,
            "age_seconds": self.age(),
            "age_buckets": dict(self.buckets),
        }


@dataclass
class StoreReport:
    """What ``llmcache stats`` says about one store."""

    url: str
    label: str
    listable: bool
    namespaces: dict[str, NamespaceSummary] = field(default_factory=dict)
    servers: dict[str, dict[str, int]] | None = None
    note: str | None = None

    def total(self) -> NamespaceSummary:
        """Return the sum over every namespace."""
        total = NamespaceSummary("(all)")
        for summary in self.namespaces.values():
            total.merge(summary)
        return total

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data (the ``--json`` output)."""
        data: dict[str, Any] = {"url": self.url, "tier": self.label, "listable": self.listable}
        if self.listable:
            data["namespaces"] = {n: s.as_dict() for n, s in sorted(self.namespaces.items())}
            data["total"] = self.total().as_dict()
        if self.servers is not None:
            data["servers"] = self.servers
        if self.note:
            data["note"] = self.note
        return data


def _server_stats(backend: Any) -> dict[str, dict[str, int]] | None:
    method = getattr(backend, "server_stats", None)
    if not callable(method):
        return None
    wanted = ("curr_items", "bytes")
    stats: Mapping[str, Mapping[str, Any]] = method()
    return {
        str(server): {name: int(values[name]) for name in wanted if name in values}
        for server, values in stats.items()
    }


def summarise(entries: Iterable[Any], *, now: float | None = None) -> dict[str, NamespaceSummary]:
    """Group scanned entries (:class:`~llmcache.backends.base.StoredEntry`) by namespace."""
    now = time.time() if now is None else now
    summaries: dict[str, NamespaceSummary] = {}
    for entry in entries:
        parts = split_physical_key(entry.key)
        namespace = parts[0] if parts is not None else "(not llmcache)"
        summary = summaries.get(namespace)
        if summary is None:
            summary = summaries[namespace] = NamespaceSummary(namespace)
        age = None if entry.created is None else max(0.0, now - entry.created)
        summary.add(int(entry.size), age, entry.expires)
    return summaries


def inspect_store(tier: Tier, *, namespace: str | None = None) -> StoreReport:
    """Summarise what a store holds, per namespace (or for one namespace).

    :raises Exception: whatever the backend raises when the store is unreachable.
    """
    url = redact(tier.url.url)
    backend = tier.backend
    if not getattr(backend, "supports_scan", False):
        servers = _server_stats(backend)
        note = f"a {tier.url.kind} store cannot list its keys, so entries cannot be counted"
        if servers is None:
            note += " per namespace, and this backend reports no server statistics"
        else:
            note += " per namespace; these are the servers' own counters, for every namespace"
        return StoreReport(url, tier.label, False, servers=servers, note=note)
    summaries = summarise(backend.scan(clear_pattern(namespace)))
    if namespace is not None:
        summaries.setdefault(namespace, NamespaceSummary(namespace))
    return StoreReport(url, tier.label, True, summaries)


def namespaces_in(tier: Tier) -> list[str]:
    """Return the namespaces a listable store holds entries of."""
    found = {
        parts[0]
        for entry in tier.backend.scan(clear_pattern(None))
        if (parts := split_physical_key(entry.key)) is not None
    }
    return sorted(found)


def duration(seconds: float) -> str:
    """Format seconds as a short human duration (``42s``, ``5m``, ``3.2h``, ``12d``)."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < HOUR:
        return f"{seconds / 60:.0f}m"
    if seconds < DAY:
        return f"{seconds / HOUR:.1f}h"
    return f"{seconds / DAY:.1f}d"


def size(count: int) -> str:
    """Format a byte count (``512 B``, ``4.0 KiB``, ``1.2 MiB``)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def render(report: StoreReport) -> list[str]:
    """Return the report as lines of text (the default ``llmcache stats`` output)."""
    lines = [f"store: {report.url} ({report.label})"]
    if not report.listable:
        lines.append(f"note: {report.note}")
        for server, values in sorted((report.servers or {}).items()):
            counts = ", ".join(f"{name} {value}" for name, value in values.items())
            lines.append(f"  {server}: {counts}")
        return lines
    if not report.namespaces:
        lines.append("no llmcache entries")
        return lines
    header = ("namespace", "entries", "bytes", "age min", "median", "max", *AGE_BUCKETS)
    rows: list[tuple[str, ...]] = [header]
    rows.extend(_row(s) for s in sorted(report.namespaces.values(), key=lambda s: s.namespace))
    if len(report.namespaces) > 1:
        rows.append(_row(report.total()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _row(summary: NamespaceSummary) -> tuple[str, ...]:
    age = summary.age()
    ages = ("-", "-", "-") if age is None else tuple(duration(age[k]) for k in age)
    buckets = tuple(str(summary.buckets[name]) for name in AGE_BUCKETS)
    return (summary.namespace, str(summary.entries), size(summary.bytes), *ages, *buckets)
