"""Why did this request miss? The canonical key of a request, whether a store holds it,
and on a miss the nearest entries with the fields that differ.

Recordings (``recording://`` files, written by the pytest plugin) keep every request beside
its answer. Other stores keep a request in an entry only when the cache that wrote it was
built with ``keep_requests=True`` (``llmcache serve --keep-requests``): on a miss,
:func:`explain` lists the namespace (SQLite, PostgreSQL, MariaDB, Redis, a client's
memory tier...), reads at most ``scan`` entries, and compares the requests they carry;
entries without one are counted. Memcached cannot list its keys, so there the explanation
stops at the key and whether it is held.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcache._rules.keys import canonical_params, physical_key
from llmcache._tiers.codec import Codec, CorruptEntry
from llmcache.backends.urls import redact
from llmcache.errors import ConfigError
from llmcache.testmode.diff import Nearest, nearest
from llmcache.testmode.lines import key_of, request_record
from llmcache.testmode.store import RecordingStore

__all__ = [
    "DEFAULT_UPSTREAMS",
    "SCAN_LIMIT",
    "Explanation",
    "explain",
    "key_of",
    "normalise",
    "render_miss",
]

DEFAULT_UPSTREAMS = {"messages": "https://api.anthropic.com"}
OPENAI_UPSTREAM = "https://api.openai.com/v1"
ENDPOINTS = ("chat.completions", "completions", "embeddings", "responses", "messages")
SCAN_LIMIT = 1000
"""How many entries of a namespace :func:`explain` reads on a miss, by default."""
_SEMANTIC = "~sem~"  # the semantic matcher's vector records (llmcache.semantic.matcher.SUFFIX)
_BATCH = 100  # entries read per get_many
_UNSIGNED = Codec()  # reads headers without checking signatures: explain never serves


def normalise(
    request: Mapping[str, Any],
    *,
    endpoint: str | None = None,
    upstream: str | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    """Return a request as recordings hold it.

    :param request: either a recorded request (``endpoint``, ``upstream``, ``params``, as
        in a recording file) or the arguments of the SDK call (``model``, ``messages``...).
    :param endpoint: the endpoint of bare arguments (default ``chat.completions``).
    :param upstream: the base URL of bare arguments (default the provider's public API).
    :param provider: the upstream identity (``"<base URL>|<organization>|<project>"``) of
        bare arguments when no ``upstream`` is given (a client's own).
    :raises ConfigError: the endpoint is not a known one.
    """
    if isinstance(request.get("params"), Mapping) and isinstance(request.get("endpoint"), str):
        record = dict(request)
        record["params"] = canonical_params(record["params"])
        return record
    endpoint = endpoint or "chat.completions"
    if endpoint not in ENDPOINTS:
        raise ConfigError(f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")
    if upstream is None and provider:
        return request_record(endpoint, provider, canonical_params(request))
    base = (upstream or DEFAULT_UPSTREAMS.get(endpoint, OPENAI_UPSTREAM)).rstrip("/")
    return request_record(endpoint, f"{base}||", canonical_params(request))


@dataclass
class Explanation:
    """What :func:`explain` found.

    :param key: the request's logical key.
    :param store: the store's URL (its password redacted), or the client's tier labels.
    :param namespace: the namespace looked in.
    :param held: whether the store holds an answer under the key.
    :param nearest: on a miss, the nearest requests the store kept.
    :param note: what the store cannot tell, when it cannot.
    :param recorded: how many of the entries read carry their request (``None`` when
        the store was not listed: a hit, or a store that cannot list its keys).
    :param scanned: how many entries of the namespace were read on a miss (``None`` for
        recordings, which are read whole).
    :param scan_limit: the most entries that were to be read.
    :param complete: whether every entry of the namespace was read (``False``: the
        limit was reached, and entries beyond it were not compared).
    :param tier: the label of the tier that holds the key (a client's), or ``None``.
    """

    key: str
    store: str
    namespace: str
    held: bool
    nearest: list[Nearest] = field(default_factory=list)
    note: str | None = None
    recorded: int | None = None
    scanned: int | None = None
    scan_limit: int | None = None
    tier: str | None = None
    complete: bool = True

    @property
    def without_request(self) -> int:
        """How many of the entries read carry no request (written without
        ``keep_requests=True``)."""
        return (self.scanned or 0) - (self.recorded or 0)

    def text(self) -> str:
        """Return the explanation as lines of text."""
        where = "" if self.namespace == "" else f" (namespace {self.namespace})"
        lines = [f"key: {self.key}", f"store: {self.store}{where}"]
        held = f"held: yes (in {self.tier})" if self.tier else "held: yes"
        lines.append(held if self.held else "held: no")
        if not self.held and self.scanned is not None:
            lines.append(self._scan_line())
        if not self.held and self.recorded is not None:
            lines += _nearest_lines(self.nearest, self.recorded)
        if not self.held and self.without_request:
            one = self.without_request == 1
            lines.append(
                f"{self.without_request} entr{'y was' if one else 'ies were'} stored without "
                f"{'its' if one else 'their'} request and {'is' if one else 'are'} not "
                "compared: build the cache with keep_requests=True (llmcache serve "
                "--keep-requests) to keep requests in entries"
            )
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def _scan_line(self) -> str:
        scanned, limit = self.scanned or 0, self.scan_limit
        line = f"read {scanned} entr{'y' if scanned == 1 else 'ies'} of the namespace"
        if self.complete:
            line += f" (all of them; at most {limit} are read)"
        else:
            line += f" (the limit, {limit}: the rest were not compared; --scan N reads more)"
        recorded = self.recorded or 0
        return line + f", {recorded} with {'its' if recorded == 1 else 'their'} request"


def _nearest_lines(found: list[Nearest], recorded: int) -> list[str]:
    if recorded == 0:
        return ["the store holds no recorded request to compare with"]
    if not found:
        return []
    lines = []
    for rank, near in enumerate(found, start=1):
        by = f", recorded by {near.test}" if near.test else ""
        what = near.request.get("endpoint"), near.request.get("params", {}).get("model")
        lines.append(f"nearest #{rank}: {what[0]} {what[1]} (key {near.key}{by})")
        lines.append("  differing fields (this request != recorded):")
        lines += [f"    {d.text()}" for d in near.differences] or ["    (none)"]
    return lines


def render_miss(
    path: str, test: str, record: dict[str, Any], key: str, found: list[Nearest], total: int
) -> str:
    """Return the failure message of a strict-mode request without a recording."""
    model = record.get("params", {}).get("model")
    lines = [
        f"llmcache strict mode: no recording of this request in {path}",
        f"  request: {record.get('endpoint')} {model} at {record.get('upstream')} (key {key})",
    ]
    if not found:
        lines.append(f"  the recording holds {total} request(s), none to compare with")
    for line in _nearest_lines(found[:1], total):
        lines.append("  " + line)
    lines.append(f"Record it: pytest --llmcache=record {test}  (or --llmcache=replay)")
    return "\n".join(lines)


def _core_of(target: Any) -> Any:
    """Return the cache of a ``CachedClient`` or of an ``llmcache.http_client``, or ``None``."""
    from llmcache._engine.core import CacheCore

    for holder in (target, getattr(target, "cache", None)):
        core = getattr(holder, "_core", None)
        if isinstance(core, CacheCore):
            return core
    return None


def explain(
    target: Any,
    request: Mapping[str, Any],
    *,
    endpoint: str | None = None,
    upstream: str | None = None,
    namespace: str | None = None,
    limit: int = 3,
    timeout: float = 5.0,
    scan: int = SCAN_LIMIT,
) -> Explanation:
    """Explain how a store answers a request: its key, whether it is held, and on a miss
    the nearest requests the store kept, with the fields that differ.

    Recordings keep every request; other stores keep those of entries written with
    ``keep_requests=True``. On a miss the namespace is listed and at most ``scan`` of its
    entries are read (stores that cannot list their keys, memcached, say so).

    :param target: a tier URL (``recording:///tests/cassettes/test_bot.jsonl``,
        ``sqlite:///cache.db``, ``redis://…``), or a ``CachedClient`` or
        ``llmcache.http_client()`` of this process, whose tiers (memory included) are
        looked in, L1 first, with its namespace and key strategy.
    :param request: a recorded request or the SDK call's arguments (see :func:`normalise`).
    :param endpoint: the endpoint of bare arguments (default ``chat.completions``).
    :param upstream: the base URL of bare arguments (default: a ``CachedClient``'s own,
        else the provider's public API).
    :param namespace: the namespace looked in (default: a client's own, else
        ``"default"``; recordings have one of their own).
    :param limit: how many nearest requests to show.
    :param timeout: seconds each store operation may take (URLs only).
    :param scan: the most entries of the namespace read on a miss.
    :raises ConfigError: the URL, the endpoint or ``scan`` is not valid, or ``target`` is
        neither a URL nor a client.
    """
    if isinstance(scan, bool) or not isinstance(scan, int) or scan < 1:
        raise ConfigError(f"scan must be a whole number of entries >= 1, not {scan!r}")
    if isinstance(target, str):
        return _explain_url(target, request, endpoint, upstream, namespace, limit, timeout, scan)
    core = _core_of(target)
    if core is None:
        raise ConfigError(
            f"explain takes a tier URL, a CachedClient or an llmcache.http_client(), "
            f"not {type(target).__name__}"
        )
    engine = getattr(target, "_engine", None)
    provider = getattr(getattr(engine, "planner", None), "provider", "") or None
    record = normalise(request, endpoint=endpoint, upstream=upstream, provider=provider)
    key = key_of(record, core.key_strategy)
    namespace = core.namespace if namespace is None else namespace
    tiers = [(_sync_backend(tier, core.is_async), tier) for tier in core.tier_list]
    where = ", ".join(tier.label for tier in core.tier_list)
    return _explain_tiers(tiers, record, key, where, namespace, limit, scan)


def _sync_backend(tier: Any, is_async: bool) -> Any:
    """Return a tier's store as blocking calls, or ``None`` (an asyncio store)."""
    if not is_async:
        return tier.backend
    return tier.direct  # the sync store of an in-process tier, None for network stores


def _explain_url(
    url: str,
    request: Mapping[str, Any],
    endpoint: str | None,
    upstream: str | None,
    namespace: str | None,
    limit: int,
    timeout: float,
    scan: int,
) -> Explanation:
    from llmcache.tools.inventory import open_store

    record = normalise(request, endpoint=endpoint, upstream=upstream)
    key = key_of(record)
    tier = open_store(url, timeout=timeout)
    backend = tier.backend
    if isinstance(backend, RecordingStore):  # recordings stay open for the process
        return _explain_recording(backend, record, key, redact(url), limit)
    try:
        tiers = [(backend, tier)]
        return _explain_tiers(tiers, record, key, redact(url), namespace or "default", limit, scan)
    finally:
        backend.close()


def _explain_tiers(
    tiers: list[tuple[Any, Any]],
    record: dict[str, Any],
    key: str,
    where: str,
    namespace: str,
    limit: int,
    scan: int,
) -> Explanation:
    """Look for ``key`` in the tiers, L1 first; on a miss, compare the requests the
    listable ones keep."""
    pkey = physical_key(namespace, key)
    result = Explanation(key, where, namespace, False)
    notes: list[str] = []
    for backend, tier in tiers:
        if backend is None:
            notes.append(f"{tier.label} is read with asyncio: explain it by its URL")
        elif backend.get(pkey) is not None:
            result.held, result.tier = True, tier.label if len(tiers) > 1 else None
            return result
    seen: dict[str, dict[str, Any] | None] = {}  # an entry held in two tiers counts once
    read = 0
    listed = False
    for backend, tier in tiers:
        if backend is None:
            continue
        if not (tier.caps.listing or getattr(backend, "supports_scan", False)):
            name = f"{tier.label}: " if len(tiers) > 1 else ""
            notes.append(
                f"{name}a {tier.url.kind} store cannot list its keys, "
                "so its entries cannot be compared with the request"
            )
            continue
        listed = True
        for entry_key, request in _entries(backend, physical_key(namespace, ""), scan - read):
            read += 1
            if seen.get(entry_key) is None:
                seen[entry_key] = request
    if listed:
        kept = [(k, "", r) for k, r in seen.items() if r is not None]
        result.scanned, result.recorded, result.scan_limit = len(seen), len(kept), scan
        result.complete = read < scan
        result.nearest = nearest(record, kept, limit)
    if notes:
        result.note = "; ".join(notes)
    return result


def _entries(backend: Any, prefix: str, most: int) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Yield ``(logical key, request or None)`` of at most ``most`` entries under
    ``prefix`` (locks, semantic vectors and unreadable values are not entries)."""
    if most <= 0:
        return
    keys: list[str] = []
    for stored in backend.scan(prefix + "*"):
        if _SEMANTIC in stored.key or stored.key.endswith(":lock"):
            continue
        keys.append(stored.key)
        if len(keys) >= most:
            break
    for start in range(0, len(keys), _BATCH):
        batch = keys[start : start + _BATCH]
        for pkey, data in zip(batch, backend.get_many(batch), strict=True):
            if data is None:  # expired or evicted since it was listed
                continue
            try:
                entry = _UNSIGNED.decode(data, pkey)
            except CorruptEntry:
                continue
            yield pkey[len(prefix) :], entry.request


def _explain_recording(
    store: RecordingStore, record: dict[str, Any], key: str, url: str, limit: int
) -> Explanation:
    store.reload()  # the file may have changed since this process opened it
    lines = store.lines()
    held = any(line.key == key for line in lines)
    recorded = [(line.key, line.test, line.request) for line in lines if line.request]
    result = Explanation(key, url, "", held, recorded=len(recorded))
    if not held:
        result.nearest = nearest(record, recorded, limit)
    unrecorded = len(lines) - len(recorded)
    if unrecorded:
        result.note = (
            f"{unrecorded} answer(s) were recorded without their request and are not compared"
        )
    return result
