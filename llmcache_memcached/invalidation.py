"""Invalidation records: how ``clear`` works on a store that cannot list its keys.

Each server holds a fixed set of small records, the *shards* of
:func:`llmcache_memcached.keys.scope_key`: each namespace is governed by the one its name
hashes to. A record is::

    gen      random 64-bit generation; entries written under another one are dead
    seq      a counter raised by every change of the record
    max_ttl  the longest TTL any entry of this generation was written with (inf: forever)
    rules    (seq, pattern, cutoff, applied): "entries matching pattern, created at or
             before cutoff (any age if None) and written before seq, are dead"

Every stored value carries the ``(gen, seq)`` of its record on its server as the writer
last saw it. A writer's view can only lag the record, so a tag is never newer than the
record was when the value was written: a rule recorded before a read therefore covers
every entry that existed when the rule was recorded, whatever the clocks say.

Clearing everything draws a new generation in every record (O(1), nothing else to keep).
Any other clear adds a rule, to the namespace's record or, when the pattern may cross
namespaces, to every record. Rules are dropped when a newer rule covers them, when no
entry they cover can still live (``applied + max_ttl + CLOCK_MARGIN`` has passed), or all
at once by a new generation when a record holds more than ``max_rules`` of them (which
also invalidates the rest of that record's entries: safe, never stale).
"""

from __future__ import annotations

import re
import secrets
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

import msgpack

from llmcache.backends import globs

__all__ = [
    "CLOCK_MARGIN",
    "DEFAULT_MAX_RULES",
    "Rule",
    "ScopeState",
    "fresh_state",
    "parse_record",
]

FORMAT = 2  # 1: the earlier global and per-namespace records
CLOCK_MARGIN = 300.0  # seconds of clock skew between processes that rule expiry tolerates
DEFAULT_MAX_RULES = 64


def _new_gen() -> int:
    return secrets.randbits(64) | 1  # never 0: a zeroed header never carries a live tag


class Rule:
    """One recorded clear.

    :param seq: the record's ``seq`` that this clear produced.
    :param pattern: the glob over physical keys, or ``None`` for every key of the record.
    :param cutoff: entries created at or before this Unix time; ``None`` for any age.
    :param applied: when the clear was recorded (the clearing process's clock).
    """

    __slots__ = ("_match", "applied", "cutoff", "pattern", "seq")

    def __init__(self, seq: int, pattern: str | None, cutoff: float | None, applied: float):
        self.seq = seq
        self.pattern = pattern
        self.cutoff = cutoff
        self.applied = applied
        self._match: Callable[[str], re.Match[str] | None] | None = (
            None if pattern is None else globs.to_regex(pattern).match
        )

    def covers(self, key: str, created: float) -> bool:
        """Tell whether an entry (written before this rule) is dead under it."""
        if self.cutoff is not None and created > self.cutoff:
            return False
        return self._match is None or self._match(key) is not None

    def includes(self, other: Rule) -> bool:
        """Tell whether every entry ``other`` covers is also covered by this newer rule."""
        if self.cutoff is not None and (other.cutoff is None or other.cutoff > self.cutoff):
            return False
        return _pattern_includes(self.pattern, other.pattern)

    def dump(self) -> list[Any]:
        return [self.seq, self.pattern, self.cutoff, self.applied]

    def __repr__(self) -> str:
        return f"Rule(seq={self.seq}, pattern={self.pattern!r}, cutoff={self.cutoff})"


def _pattern_includes(outer: str | None, inner: str | None) -> bool:
    """A sound (not complete) test that glob ``outer`` matches every key ``inner`` does."""
    if outer is None or outer == inner:
        return True
    if inner is None:
        return False
    tokens = list(globs.tokens(outer))
    if not tokens or tokens[-1][0] != "star" or any(k != "lit" for k, _ in tokens[:-1]):
        return False  # only "<literal>*" is compared, which covers the usual prefix clears
    prefix = "".join(c for _, c in tokens[:-1])
    inner_prefix: list[str] = []
    for kind, char in globs.tokens(inner):
        if kind != "lit":
            break
        inner_prefix.append(char)
    return "".join(inner_prefix).startswith(prefix)


_Check = tuple[Callable[[str], "re.Match[str] | None"] | None, tuple[Rule, ...]]


class ScopeState:
    """One invalidation record on one server (immutable)."""

    __slots__ = ("_checks", "_seqs", "gen", "max_ttl", "rules", "seq", "top")

    def __init__(self, gen: int, seq: int, max_ttl: float, rules: tuple[Rule, ...] = ()):
        self.gen = gen
        self.seq = seq
        self.max_ttl = max_ttl
        self.rules = tuple(sorted(rules, key=lambda rule: rule.seq, reverse=True))
        self.top = self.rules[0].seq if self.rules else 0
        self._seqs = [rule.seq for rule in reversed(self.rules)]
        self._checks: dict[int, _Check] = {}

    def invalidates(self, key: str, tag: int, created: float) -> bool:
        """Tell whether a value of this generation tagged ``tag`` is dead under the rules."""
        if tag >= self.top:
            return False
        newer = len(self._seqs) - bisect_right(self._seqs, tag)  # self.rules[:newer] apply
        check = self._checks.get(newer)
        if check is None:
            check = self._checks[newer] = self._compile(self.rules[:newer])
        any_age, aged = check
        if any_age is not None and any_age(key) is not None:
            return True
        return any(rule.covers(key, created) for rule in aged)

    @staticmethod
    def _compile(rules: tuple[Rule, ...]) -> _Check:
        """One regex for the rules of any age; the age-limited ones are checked one by one."""
        patterns = [rule.pattern for rule in rules if rule.cutoff is None and rule.pattern]
        aged = tuple(rule for rule in rules if rule.cutoff is not None or not rule.pattern)
        if not patterns:
            return None, aged
        # glob regexes hold no bare "|", and a plain alternation lets re factor out the
        # literal prefix the patterns share ("llmcache:<namespace>:")
        joined = "|".join(globs.to_regex(pattern).pattern for pattern in patterns)
        return re.compile(joined, re.DOTALL).match, aged

    # -- changes (each returns a new record) ---------------------------------------------

    def with_max_ttl(self, ttl: float) -> ScopeState:
        """Return this record allowing values that live ``ttl`` seconds (inf: forever)."""
        return ScopeState(self.gen, self.seq + 1, max(self.max_ttl, ttl), self.rules)

    def with_clear(
        self,
        pattern: str | None,
        cutoff: float | None,
        *,
        now: float,
        max_rules: int = DEFAULT_MAX_RULES,
    ) -> ScopeState:
        """Return this record after ``clear(pattern, cutoff)``.

        :param pattern: a glob over physical keys, ``None`` for every key of the record.
        :param cutoff: only entries created at or before this time; ``None`` for any age.
        """
        seq = self.seq + 1
        if pattern is None and cutoff is None:
            return ScopeState(_new_gen(), seq, 0.0)
        rule = Rule(seq, pattern, cutoff, now)
        horizon = now - self.max_ttl - CLOCK_MARGIN
        kept = [old for old in self.rules if old.applied >= horizon and not rule.includes(old)]
        if len(kept) >= max_rules:
            return ScopeState(_new_gen(), seq, 0.0)  # too many rules: a new generation
        return ScopeState(self.gen, seq, self.max_ttl, (rule, *kept))

    # -- bytes ---------------------------------------------------------------------------

    def encode(self) -> bytes:
        """Return the record as stored in memcached."""
        packed: bytes = msgpack.packb(
            [FORMAT, self.gen, self.seq, self.max_ttl, [rule.dump() for rule in self.rules]]
        )
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> ScopeState:
        """Parse a stored record.

        :raises ValueError: the bytes are not a record of this format.
        """
        try:
            fmt, gen, seq, max_ttl, rules = msgpack.unpackb(raw)
            if fmt == FORMAT and isinstance(gen, int) and isinstance(seq, int):
                return cls(
                    gen,
                    seq,
                    float(max_ttl),
                    tuple(Rule(int(s), p, c, float(a)) for s, p, c, a in rules),
                )
        except Exception as exc:
            raise ValueError(f"not an invalidation record: {exc}") from exc
        raise ValueError(f"not an invalidation record of format {FORMAT}")

    def __repr__(self) -> str:
        return (
            f"ScopeState(gen={self.gen:#x}, seq={self.seq}, max_ttl={self.max_ttl}, "
            f"rules={list(self.rules)})"
        )


def fresh_state() -> ScopeState:
    """Return a record for a key that holds none: a new generation, no rules."""
    return ScopeState(_new_gen(), 1, 0.0)


def parse_record(raw: bytes) -> ScopeState | None:
    """Return the record stored as ``raw``, or ``None`` when the bytes are no record."""
    try:
        return ScopeState.decode(raw)
    except ValueError:
        return None
