"""TTL policies: how long an answer is kept, decided per request.

A policy's ``ttl(request)`` returns seconds, ``None`` (forever), :data:`~llmcache.NEVER`
(bypass the cache: no read, no write) or :data:`DEFAULT` (defer to the client's
``default_ttl``).
"""

from __future__ import annotations

import enum
import re
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from llmcache._rules.request import NEVER, CacheRequest, Never
from llmcache.hookspecs import RegisterTTLPolicy, hookimpl

__all__ = [
    "DEFAULT",
    "LONG",
    "MEDIUM",
    "SHORT",
    "FixedPolicy",
    "IntentPolicy",
    "TTLPolicy",
    "last_user_text",
]

LONG = 86400.0
MEDIUM = 3600.0
SHORT = 300.0


class _Default(enum.Enum):
    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "llmcache.DEFAULT"


DEFAULT: Final = _Default.DEFAULT
"""A policy returns this to defer to the client's ``default_ttl``."""

TTLResult = float | None | Never | _Default


@runtime_checkable
class TTLPolicy(Protocol):
    """How long a request's answer is kept.

    Any object with this method is a TTL policy; subclass this class to say so. Register it
    by name with ``llmcache_register_ttl_policies`` or pass it as ``ttl_policy=MyPolicy()``.
    """

    @abstractmethod
    def ttl(self, request: CacheRequest) -> TTLResult:
        """Return seconds, ``None`` (forever), :data:`~llmcache.NEVER` (bypass the cache:
        no read, no write) or :data:`DEFAULT` (the client's ``default_ttl``)."""


class FixedPolicy(TTLPolicy):
    """The same TTL for every request: ``seconds``, or the client's ``default_ttl``.

    :param seconds: the TTL; leave it out to use the client's ``default_ttl``.
    """

    name = "fixed"

    def __init__(self, seconds: float | _Default | None = DEFAULT) -> None:
        self.seconds = seconds

    def ttl(self, request: CacheRequest) -> TTLResult:
        """Return the fixed TTL."""
        return self.seconds


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable) and not isinstance(content, (bytes, Mapping)):
        return " ".join(_text(part) for part in content)
    if isinstance(content, Mapping):
        for field in ("text", "content", "input_text"):
            if isinstance(content.get(field), (str, list)):
                return _text(content[field])
    return ""


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, Mapping) else getattr(message, "role", None)


def _content(message: Any) -> Any:
    if isinstance(message, Mapping):
        return message.get("content")
    return getattr(message, "content", None)


def last_user_text(request: CacheRequest) -> str:
    """Return the text of the last user message of a request (the prompt, for completions)."""
    params = request.params
    for field in ("messages", "input"):
        value = params.get(field)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            for message in reversed(value):
                if _role(message) == "user":
                    return _text(_content(message))
            if value and all(isinstance(item, str) for item in value):
                return str(value[-1])  # a list of plain inputs (embeddings)
    prompt = params.get("prompt")
    return _text(prompt) if prompt is not None else ""


def _matcher(phrases: Iterable[str]) -> re.Pattern[str] | None:
    words = [r"\s+".join(map(re.escape, p.split())) for p in phrases if p.strip()]
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", re.IGNORECASE)


class IntentPolicy(TTLPolicy):
    """Cache by what the prompt asks, judged from the last user message.

    Matching is on whole words and phrases, case-insensitive (``now`` does not match
    ``know``). ``never`` wins, then ``long``, then ``medium``; ``default`` otherwise. A list
    given replaces the default list of its class.

    :param never: phrases that make an answer time-sensitive: bypass the cache.
    :param long: phrases of reference questions, kept ``long_ttl`` seconds.
    :param medium: phrases of code requests, kept ``medium_ttl`` seconds.
    :param default: the TTL when nothing matches.
    """

    name = "intent"
    NEVER_WORDS = ("current", "today", "now", "latest")
    LONG_WORDS = ("definition", "explain", "what is")
    MEDIUM_WORDS = ("write", "code", "function")

    def __init__(
        self,
        never: Iterable[str] | None = None,
        long: Iterable[str] | None = None,
        medium: Iterable[str] | None = None,
        default: float | None = SHORT,
        *,
        long_ttl: float | None = LONG,
        medium_ttl: float | None = MEDIUM,
    ) -> None:
        for name, value in (("never", never), ("long", long), ("medium", medium)):
            if isinstance(value, str):
                raise TypeError(f"IntentPolicy({name}=...) takes a list of phrases, not a string")
        self._rules: list[tuple[re.Pattern[str] | None, TTLResult]] = [
            (_matcher(self.NEVER_WORDS if never is None else never), NEVER),
            (_matcher(self.LONG_WORDS if long is None else long), long_ttl),
            (_matcher(self.MEDIUM_WORDS if medium is None else medium), medium_ttl),
        ]
        self.default = default

    def classify(self, text: str) -> TTLResult:
        """Return the TTL for a prompt's text."""
        for pattern, ttl in self._rules:
            if pattern is not None and pattern.search(text):
                return ttl
        return self.default

    def ttl(self, request: CacheRequest) -> TTLResult:
        """Return the TTL for the request's last user message."""
        return self.classify(last_user_text(request))


@hookimpl
def llmcache_register_ttl_policies(register: RegisterTTLPolicy) -> None:
    """Register the built-in policies ``fixed`` and ``intent``."""
    register("fixed", FixedPolicy())
    register("intent", IntentPolicy())
