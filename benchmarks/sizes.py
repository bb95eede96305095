"""Entry sizes: what one cached response takes in each form, against its JSON.

Forms: the upstream's JSON (compact, as the simulator sends it), the SDK object's
``model_dump_json()``, the payload in msgpack, llmcache's entry (the codec's envelope with
its default compression threshold) and the same entry compressed whatever its size. The
typical ~1.4 KB response is below the default threshold (the codec does not compress it);
an answer eight times longer (English-like words) is measured too, to show compression where
it applies.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from llmcache._tiers.codec import COMPRESS_THRESHOLD, Codec, Entry

from .workload import prose

__all__ = ["THRESHOLD", "SizeRow", "measure_sizes"]


@dataclass(frozen=True)
class SizeRow:
    """Sizes of one response in bytes."""

    response: str
    json: int
    sdk_json: int
    json_zlib: int
    msgpack: int
    entry: int
    entry_compressed: int


def _entry(codec: Codec, payload: dict[str, Any]) -> bytes:
    key = "llmcache:sizes:v1-" + "0" * 32
    return codec.encode(Entry(key, time.time(), None, "response", payload, "gpt-4o-mini", 1, 1))


def _row(name: str, payload: dict[str, Any], sdk_json: int) -> SizeRow:
    raw = orjson.dumps(payload)
    return SizeRow(
        name,
        len(raw),
        sdk_json,
        len(zlib.compress(raw, 6)),
        len(msgpack.packb(payload)),
        len(_entry(Codec(), payload)),
        len(_entry(Codec(compress_threshold=0), payload)),
    )


def measure_sizes(response: Any) -> list[SizeRow]:
    """Measure the typical response, and one with an answer eight times longer."""
    payload = response.to_dict()
    rows = [_row("typical (~1.4 KB)", payload, len(response.model_dump_json()))]
    long = orjson.loads(orjson.dumps(payload))
    message = long["choices"][0]["message"]
    message["content"] = prose("long answer", 8 * len(message["content"]))
    sdk = type(response).model_validate(long)
    rows.append(_row("8x longer answer", long, len(sdk.model_dump_json())))
    return rows


THRESHOLD = COMPRESS_THRESHOLD
