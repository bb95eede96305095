"""Where the Redis backend keeps things: entries, age indexes, locks, and its Lua scripts.

Entries live under the physical key the core gives (``llmcache:<namespace>:<logical>``).
Beside them, each namespace has an *age index*: two sorted sets whose members are the
namespace's keys, one scored by creation time (read by ``clear(older_than=...)``) and one
scored by expiry time (used to prune members whose entries expired). Keys that are not
physical keys (a test's or a tool's own) share one extra index, the "other" bucket.

Internal keys start with ``_llmcache:`` so that no ``llmcache:*`` glob can reach them.
The two sets of an index carry the same hash tag, so a Lua script can touch both on a
Redis Cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

from llmcache.backends import globs, namespace_glob, split_physical_key

__all__ = [
    "ALL_KEYS_GLOB",
    "INDEX_GLOB",
    "INTERNAL_PREFIX",
    "PRUNE_SCRIPT",
    "UNLOCK_SCRIPT",
    "Index",
    "bucket_of",
    "bucket_of_index",
    "group_by_bucket",
    "index_of",
    "is_internal",
    "lock_key",
    "pattern_namespace",
]

KeyT = TypeVar("KeyT", bound=str | bytes)

INTERNAL_PREFIX: Final = "_llmcache:"
_INDEX_PREFIX: Final = INTERNAL_PREFIX + "idx:{"
_CREATED_SUFFIX: Final = "}:created"
_EXPIRES_SUFFIX: Final = "}:expires"
_LOCK_PREFIX: Final = INTERNAL_PREFIX + "lock:"
_OTHER_TAG: Final = "other"

#: Redis MATCH pattern of every index's creation-time set.
INDEX_GLOB: Final = globs.to_redis(globs.escape(_INDEX_PREFIX) + "*" + _CREATED_SUFFIX)
#: The glob (llmcache dialect) of every physical key, all namespaces.
ALL_KEYS_GLOB: Final = namespace_glob("*").removesuffix("*:*") + "*"


@dataclass(frozen=True, slots=True)
class Index:
    """The two sorted sets of one bucket's age index."""

    created: str
    expires: str


def index_of(bucket: str | None) -> Index:
    """Return the age index of a namespace (``None``: keys that are not physical keys)."""
    tag = _OTHER_TAG if bucket is None else "ns=" + bucket
    return Index(_INDEX_PREFIX + tag + _CREATED_SUFFIX, _INDEX_PREFIX + tag + _EXPIRES_SUFFIX)


def bucket_of_index(created_key: str) -> str | None:
    """Return the bucket whose creation-time set is ``created_key`` (see :func:`index_of`)."""
    tag = created_key.removeprefix(_INDEX_PREFIX).removesuffix(_CREATED_SUFFIX)
    return tag[3:] if tag.startswith("ns=") else None


def _text(key: str | bytes) -> str:
    return key if isinstance(key, str) else key.decode("utf-8", "surrogateescape")


def bucket_of(key: str | bytes) -> str | None:
    """Return the namespace of a physical key, ``None`` for any other key."""
    parts = split_physical_key(_text(key))
    return None if parts is None else parts[0]


def group_by_bucket(keys: Iterable[KeyT]) -> dict[str | None, list[KeyT]]:
    """Group keys by the index they belong to."""
    groups: defaultdict[str | None, list[KeyT]] = defaultdict(list)
    for key in keys:
        groups[bucket_of(key)].append(key)
    return groups


def is_internal(key: str | bytes) -> bool:
    """Tell whether ``key`` is one of the backend's own (an index or a lock)."""
    return _text(key).startswith(INTERNAL_PREFIX)


def pattern_namespace(pattern: str) -> str | None:
    """Return the one namespace a glob can match, or ``None`` when it may match several.

    The core's patterns always start with ``llmcache:<namespace>:`` literally, so a clear
    reads one namespace's index; any other glob may match keys of every bucket.
    """
    literal = []
    for kind, char in globs.tokens(pattern):
        if kind != "lit":
            break
        literal.append(char)
    parts = split_physical_key("".join(literal))
    return None if parts is None else parts[0]


def lock_key(name: str) -> str:
    """Return the key of a single-flight lock."""
    return _LOCK_PREFIX + name


# KEYS: created set, expires set. ARGV: expiry cutoff (Unix seconds), most members to drop.
PRUNE_SCRIPT: Final = """
local doomed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #doomed > 0 then
  redis.call('ZREM', KEYS[2], unpack(doomed))
  redis.call('ZREM', KEYS[1], unpack(doomed))
end
return #doomed
"""

# KEYS: the lock. ARGV: the holder's token. Delete only a lock we still hold.
UNLOCK_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
