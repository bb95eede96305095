"""Memcached key names: entry keys, invalidation records, locks.

memcached keys are at most 250 bytes of printable ASCII without spaces. An llmcache key
that fits is sent as it is, so ``stats cachedump`` stays readable; any other key (too long,
spaces, control characters, non-ASCII) is sent as a BLAKE2b digest. Keys of our own
(invalidation records, locks) start with ``~``, and a caller's key that starts with ``~`` is
always hashed, so the two spaces never meet.

Invalidation records are *shards*: :data:`SHARDS` records per server, and each namespace
(the entries whose physical key is ``llmcache:<namespace>:...``) is governed by the one
its name hashes to; keys outside any namespace belong to the shard of ``""``. A clear
confined to one namespace changes one shard; a clear that may cross namespaces changes
every shard, a fixed and known set, which is why namespaces do not get a record each
(memcached cannot list them, so a clear of the whole store could not find them all).
"""

from __future__ import annotations

import hashlib
import zlib

from llmcache.backends import globs, physical_key, split_physical_key

__all__ = [
    "MAX_KEY_LENGTH",
    "SHARDS",
    "entry_key",
    "lock_key",
    "namespace_of",
    "namespace_pattern",
    "pattern_scope",
    "scope_key",
    "scope_keys",
    "whole_scope",
]

MAX_KEY_LENGTH = 250
_OWN = "~"
_HASHED = "~h:"
_LOCK = "~l:"
SHARDS = 256  # records per server; every process must agree on it
# "~r:", not the "~s" of the earlier per-namespace records: old records are never read
_RECORDS = tuple(f"~r:{shard:02x}" for shard in range(SHARDS))


def _plain(key: str, limit: int) -> bool:
    return (
        len(key) <= limit
        and key.isascii()
        and key.isprintable()
        and " " not in key
        and not key.startswith(_OWN)
    )


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=24).hexdigest()


def entry_key(key: str) -> str:
    """Return the memcached key that stores the llmcache key ``key``."""
    if _plain(key, MAX_KEY_LENGTH):
        return key
    return _HASHED + _digest(key)


def scope_key(namespace: str | None) -> str:
    """Return the key of the invalidation record that governs ``namespace``'s entries.

    ``None`` (keys outside any namespace) is governed by the record of ``""``.
    """
    text = "" if namespace is None else namespace
    return _RECORDS[zlib.crc32(text.encode("utf-8", "surrogatepass")) % SHARDS]


def scope_keys() -> tuple[str, ...]:
    """Return the keys of every invalidation record, in a fixed order."""
    return _RECORDS


def lock_key(name: str) -> str:
    """Return the memcached key of the lock ``name``."""
    return _LOCK + _digest(name)


def namespace_of(key: str) -> str | None:
    """Return the namespace of a physical key, or ``None`` for any other key."""
    parts = split_physical_key(key)
    return None if parts is None else parts[0]


def _literal_prefix(pattern: str) -> tuple[str, bool]:
    """Return the literal text before the first wildcard, and whether it ends the pattern."""
    prefix: list[str] = []
    for kind, char in globs.tokens(pattern):
        if kind != "lit":
            return "".join(prefix), False
        prefix.append(char)
    return "".join(prefix), True


def pattern_scope(pattern: str | None) -> str | None:
    """Return the namespace a clear pattern is confined to, or ``None`` when it may cross.

    ``llmcache:ns:user_1:*`` is confined to ``ns``; ``llmcache:n?:*``, ``*`` and keys that
    are not physical keys are not.
    """
    if pattern is None:
        return None
    prefix, _ = _literal_prefix(pattern)
    parts = split_physical_key(prefix)
    return None if parts is None else parts[0]


def namespace_pattern(namespace: str) -> str:
    """Return the glob of every physical key of ``namespace``."""
    return globs.escape(physical_key(namespace, "")) + "*"


def whole_scope(pattern: str | None, namespace: str | None) -> bool:
    """Tell whether ``pattern`` matches every key of the scope ``namespace``."""
    if pattern is None:
        return namespace is None
    kinds = [kind for kind, _ in globs.tokens(pattern)]
    prefix, exact = _literal_prefix(pattern)
    if namespace is None:
        return bool(kinds) and all(kind == "star" for kind in kinds)
    stars = kinds[len(prefix) :]
    return (
        not exact
        and prefix == physical_key(namespace, "")
        and bool(stars)
        and all(kind == "star" for kind in stars)
    )
