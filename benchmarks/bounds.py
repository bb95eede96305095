"""The least a cache hit written in Python can add to the physical floor.

The physical floor (:mod:`benchmarks.floors`) is native work: orjson, BLAKE2b, the store's
raw read and pydantic-core's validation. Any cache written in Python runs some interpreted
steps on top of it. This module times *bare bounds* of a hit, one flat function with no
structure at all (no classes, tiers, options or observers), against the same floor in the
same run, beside llmcache's own hit on the same store:

- **bare**: the arguments checked against the key's deny-list, the versioned key tuple
  dumped with orjson and hashed with BLAKE2b, the read (memory: an LRU ``get`` and
  ``move_to_end``; SQLite: the one-key ``SELECT`` of llmcache's table and a msgpack unpack of
  the entry, whose key, times and token counts the hit needs), the expiry check, the
  validation, one statistics record and the ``cache_*`` attributes;
- **bare + NaN check**: the same, plus the walk that tells a NaN argument from ``null``
  (orjson writes both as ``null``), with llmcache's own walk: what every hit paid before
  entries said whether their request held ``null`` (``Entry.null_free``).

A target below a store's *bare* ratio asks for less interpreted work than a hit's
guarantees need, whatever the code around them; the distance from *bare* to the target is
what the cache's structure (tiers, breakers, observers, plugins) may cost.

``python -m benchmarks.bounds`` prints the rows.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import orjson
from openai.types.chat import ChatCompletion

from llmcache import CachedClient
from llmcache._rules.keys import DENIED_PARAMS, KEY_VERSION, _finite, physical_key
from llmcache.providers import identity

from .floors import (
    FLOOR_TABLE,
    DictStore,
    SQLiteStore,
    decode_payload,
    physical_digest,
    physical_floor,
)
from .timing import Paired, paired
from .upstream import Upstream
from .workload import chat_request, openai_client

__all__ = ["BoundRow", "Found", "bare_hit", "lru_read", "measure_bounds", "sqlite_read"]

_PLAIN = frozenset({str, int, float, bool, type(None), list, dict, tuple})

#: What a bare read returns: the answer's JSON, when it was written, its expiry, its tokens.
Found = tuple[bytes, float, float | None, int]


@dataclass(frozen=True)
class BoundRow:
    """One hit against the physical floor, timed in alternating blocks."""

    store: str
    name: str
    result: Paired


def bare_hit(
    read: Callable[[str], Found | None], prefix: str, provider: str, *, nan_check: bool
) -> Callable[..., Any]:
    """Return the bare bound's ``create``: a hit with no structure around it.

    :param read: the store's read of a physical key.
    :param prefix: the physical keys' prefix (``llmcache:<namespace>:``).
    :param nan_check: also tell NaN arguments from ``null`` (a NaN in a request is a miss).
    """
    validate = ChatCompletion.model_validate_json
    dumps, sort = orjson.dumps, orjson.OPT_SORT_KEYS
    blake2b = hashlib.blake2b
    log: list[tuple[str, int]] = []

    def create(**params: Any) -> Any:
        for name, value in params.items():
            if name in DENIED_PARAMS or type(value) not in _PLAIN or name.startswith("cache_"):
                return None
        blob = dumps((KEY_VERSION, "chat.completions", provider, params), option=sort)
        if nan_check and not _finite(params):
            return None
        key = KEY_VERSION + "-" + blake2b(blob, digest_size=16).hexdigest()
        found = read(prefix + key)
        if found is None:
            return None
        payload, created, expires, tokens = found
        now = time.time()
        if expires is not None and now >= expires:
            return None
        served = validate(payload)
        log.append((key, tokens))
        marks = vars(served)
        marks["cache_hit"] = True
        marks["cache_age"] = now - created
        marks["cache_tokens_saved"] = tokens
        marks["cache_tier"] = "L1"
        marks["cache_key"] = key
        marks["cache_match"] = "exact"
        marks["cache_similarity"] = None
        return served

    return create


def lru_read(items: OrderedDict[str, Found]) -> Callable[[str], Found | None]:
    """Return the bare memory read: an LRU lookup that moves the entry to the end."""

    def read(key: str) -> Found | None:
        found = items.get(key)
        if found is not None:
            items.move_to_end(key)
        return found

    return read


def sqlite_read(conn: sqlite3.Connection) -> Callable[[str], Found | None]:
    """Return the bare SQLite read of llmcache's table: the row, its entry unpacked."""
    sql = "SELECT value FROM llmcache_entries WHERE key = ?"
    unpack = msgpack.unpackb

    def read(key: str) -> Found | None:
        row = conn.execute(sql, (key,)).fetchone()
        if row is None:
            return None
        _magic, _version, header, body, _signature = unpack(row[0])
        if header[0] != key:  # bytes written for another key
            return None
        return body, header[1], header[2], header[5] + header[6]

    return read


def _rows(
    store: str,
    client: CachedClient,
    floor: Callable[[], Any],
    bare_reads: dict[str, Callable[..., Any]],
    params: dict[str, Any],
    settings: Any,
    log: Callable[[str], None],
) -> list[BoundRow]:
    sides = {**bare_reads, "llmcache": client.chat.completions.create}
    rows = []
    for name, call in sides.items():
        if not getattr(call(**params), "cache_hit", False):
            raise RuntimeError(f"{store}, {name}: the typical request was not a hit")
        result = paired(
            lambda call=call: call(**params),  # type: ignore[misc]
            floor,
            rounds=settings.rounds,
            block=settings.block,
            block_seconds=settings.block_seconds,
        )
        rows.append(BoundRow(store, name, result))
        log(f"  {store:<7} {name:<17} x{result.ratio:.3f} the physical floor")
    return rows


def measure_bounds(
    upstream: Upstream, settings: Any, log: Callable[[str], None], workdir: Path
) -> list[BoundRow]:
    """Time the bare bounds and llmcache's hit on the memory tier and on SQLite, each
    against the physical floor.

    :param settings: the hit rows' settings (:class:`benchmarks.hits.Settings`).
    :param workdir: where the SQLite file goes.
    """
    sdk = openai_client(upstream.base_url)
    provider = identity(sdk)
    params = chat_request()
    prefix = physical_key("bounds", "")
    rows = []
    memory = CachedClient(sdk, tiers=["memory://"], namespace="bounds")
    try:
        answer = memory.chat.completions.create(**params)
        body = answer.model_dump_json(exclude_unset=True).encode()
        tokens = answer.usage.total_tokens if answer.usage else 0
        items = OrderedDict({prefix + answer.cache_key: (body, time.time(), None, tokens)})
        floor = physical_floor(params, DictStore({physical_digest(params): body}).get)
        bare = {
            "bare": bare_hit(lru_read(items), prefix, provider, nan_check=False),
            "bare + NaN check": bare_hit(lru_read(items), prefix, provider, nan_check=True),
        }
        rows += _rows("memory", memory, floor, bare, params, settings, log)
    finally:
        memory.close()
    path = workdir / "bounds.db"
    sqlite = CachedClient(sdk, tiers=[f"sqlite:///{path}"], namespace="bounds")
    own = SQLiteStore(str(path), FLOOR_TABLE)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        answer = sqlite.chat.completions.create(**params)
        entry = conn.execute(
            "SELECT value FROM llmcache_entries WHERE key = ?", (prefix + answer.cache_key,)
        ).fetchone()
        own.put(physical_digest(params), decode_payload(entry[0]))
        floor = physical_floor(params, own.get)
        read = sqlite_read(conn)
        bare = {
            "bare": bare_hit(read, prefix, provider, nan_check=False),
            "bare + NaN check": bare_hit(read, prefix, provider, nan_check=True),
        }
        rows += _rows("SQLite", sqlite, floor, bare, params, settings, log)
    finally:
        conn.close()
        own.close()
        sqlite.close()
    return rows


def main() -> int:
    """Print the bounds' rows."""
    from .hits import Settings
    from .pinning import place

    placement = place()
    print(f"pinning: {placement.describe()}", flush=True)
    with tempfile.TemporaryDirectory() as workdir, Upstream(placement.server_cpu) as upstream:
        measure_bounds(upstream, Settings(), print, Path(workdir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
