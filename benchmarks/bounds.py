"""The least a cache hit written in Python can add to the physical floor.

The physical floor (:mod:`benchmarks.floors`) is native work: orjson, BLAKE2b, a dict read
and pydantic-core's validation. Any cache written in Python runs some interpreted steps on
top of it. This module measures two *bare bounds* of a memory hit, each one flat function
with no structure at all (no classes, no tiers, no options, no observers), against the same
floor in the same run, beside llmcache's own memory hit:

- **bare**: the arguments checked against the key's deny-list, the versioned key tuple
  dumped with orjson and hashed with BLAKE2b, an LRU read (``get`` and ``move_to_end``), the
  expiry check, the validation, one statistics record and the ``cache_*`` attributes;
- **bare + NaN check**: the same, plus the walk that tells a NaN argument from ``null``
  (orjson writes both as ``null``), with llmcache's own walk.

A target on the memory hit below the second bound's ratio asks for less interpreted work
than the cache's guarantees need, whatever the structure around them.

``python -m benchmarks.bounds`` prints the three rows.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from openai.types.chat import ChatCompletion

from llmcache import CachedClient
from llmcache._rules.keys import DENIED_PARAMS, KEY_VERSION, _finite
from llmcache.providers import identity

from .floors import DictStore, physical_digest, physical_floor
from .timing import Paired, paired
from .upstream import Upstream
from .workload import chat_request, openai_client

__all__ = ["BoundRow", "bare_hit", "measure_bounds"]

_PLAIN = frozenset({str, int, float, bool, type(None), list, dict, tuple})


@dataclass(frozen=True)
class BoundRow:
    """One hit against the physical floor, timed in alternating blocks."""

    name: str
    result: Paired


def bare_hit(
    items: OrderedDict[str, tuple[bytes, float, float | None, int]],
    provider: str,
    *,
    nan_check: bool,
) -> Callable[..., Any]:
    """Return the bare bound's ``create``: a memory hit with no structure around it.

    :param items: the LRU store: key -> (the answer's JSON, created, expires, tokens).
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
        item = items.get(key)
        if item is None:
            return None
        items.move_to_end(key)
        payload, created, expires, tokens = item
        now = time.time()
        if expires is not None and now >= expires:
            return None
        served = validate(payload)
        log.append((key, tokens))
        marks = vars(served)
        marks["cache_hit"] = True
        marks["cache_age"] = now - created
        marks["cache_tokens_saved"] = tokens
        marks["cache_tier"] = "L1:memory"
        marks["cache_key"] = key
        marks["cache_match"] = "exact"
        marks["cache_similarity"] = None
        return served

    return create


def measure_bounds(upstream: Upstream, settings: Any, log: Callable[[str], None]) -> list[BoundRow]:
    """Time the two bare bounds and llmcache's memory hit, each against the physical floor.

    :param settings: the hit rows' settings (:class:`benchmarks.hits.Settings`).
    """
    sdk = openai_client(upstream.base_url)
    client = CachedClient(sdk, tiers=["memory://"], namespace="bounds")
    params = chat_request()
    try:
        answer = client.chat.completions.create(**params)
        body = answer.model_dump_json(exclude_unset=True).encode()
        tokens = answer.usage.total_tokens if answer.usage else 0
        provider = identity(sdk)
        key = answer.cache_key
        items = OrderedDict({key: (body, time.time(), None, tokens)})
        floor = physical_floor(params, DictStore({physical_digest(params): body}).get)
        create = client.chat.completions.create
        sides = {
            "bare": bare_hit(items, provider, nan_check=False),
            "bare + NaN check": bare_hit(items, provider, nan_check=True),
            "llmcache, memory tier": create,
        }
        rows = []
        for name, call in sides.items():
            if not getattr(call(**params), "cache_hit", False):
                raise RuntimeError(f"{name}: the typical request was not a hit")
            result = paired(
                lambda call=call: call(**params),  # type: ignore[misc]
                floor,
                rounds=settings.rounds,
                block=settings.block,
                block_seconds=settings.block_seconds,
            )
            rows.append(BoundRow(name, result))
            log(f"  {name:<24} x{result.ratio:.3f} the physical floor")
        return rows
    finally:
        client.close()


def main() -> int:
    """Print the bounds' rows."""
    from .hits import Settings
    from .pinning import place

    placement = place()
    print(f"pinning: {placement.describe()}", flush=True)
    with Upstream(placement.server_cpu) as upstream:
        measure_bounds(upstream, Settings(), print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
