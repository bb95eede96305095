"""llmcache's glob dialect for ``clear_cache(key=...)``.

``*`` matches any run of characters, ``?`` one character, and a backslash makes the next
character literal. Nothing else is special, so every backend (Redis patterns, SQL ``LIKE``,
regular expressions) can translate it exactly; use :func:`escape` on text that comes from
users so that it can never widen a clear.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

__all__ = ["escape", "to_like", "to_redis", "to_regex", "tokens"]

_SPECIAL = "*?\\"


def escape(text: str) -> str:
    """Return ``text`` as a glob that matches exactly itself."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def tokens(pattern: str) -> Iterator[tuple[str, str]]:
    """Yield ``("star" | "one" | "lit", char)`` for each element of a glob."""
    chars = iter(pattern)
    for c in chars:
        if c == "\\":
            yield "lit", next(chars, "\\")
        elif c == "*":
            yield "star", c
        elif c == "?":
            yield "one", c
        else:
            yield "lit", c


@lru_cache(maxsize=256)
def to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob into an anchored regular expression."""
    parts = []
    for kind, c in tokens(pattern):
        parts.append(".*" if kind == "star" else "." if kind == "one" else re.escape(c))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def to_redis(pattern: str) -> str:
    """Translate a glob into a Redis ``SCAN MATCH`` pattern (``[``/``]`` escaped)."""
    out = []
    for kind, c in tokens(pattern):
        if kind == "lit":
            out.append("\\" + c if c in "*?[]\\^" else c)
        else:
            out.append(c)
    return "".join(out)


def to_like(pattern: str, escape_char: str = "\\") -> str:
    """Translate a glob into a SQL ``LIKE`` pattern using ``escape_char`` as ESCAPE."""
    out = []
    for kind, c in tokens(pattern):
        if kind == "star":
            out.append("%")
        elif kind == "one":
            out.append("_")
        elif c in ("%", "_", escape_char):
            out.append(escape_char + c)
        else:
            out.append(c)
    return "".join(out)
