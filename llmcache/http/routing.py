"""Which HTTP requests the cache answers, for which upstream, with which per-call options.

A request is cached when it is a POST whose path ends with one of the API paths the
providers registered (``/chat/completions``, ``/v1/messages``...), under any base-URL
prefix, with a JSON object as its body. Its upstream identity is the URL up to that path
(scheme, host, port, prefix; the query string too when there is one) and the
``OpenAI-Organization`` / ``OpenAI-Project`` headers: the same identity a ``CachedClient``
derives from the SDK client, so both doors share entries. Per-call control comes in
request headers, which are consumed and never sent upstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llmcache._rules.options import KNOWN_OPTIONS
from llmcache._rules.request import Endpoint

__all__ = [
    "CONTROL_HEADERS",
    "IDENTITY_HEADERS",
    "BadControlHeader",
    "Route",
    "control_options",
    "route",
]

# request header -> the cache_* option it carries
CONTROL_HEADERS = {
    "cache-control": "cache_control",
    "llmcache-ttl": "cache_ttl",
    "llmcache-key": "cache_key",
    "llmcache-strategy": "cache_strategy",
    "llmcache-tier": "cache_tier",
    "llmcache-semantic": "cache_semantic",
}
IDENTITY_HEADERS = (b"openai-organization", b"openai-project")
assert set(CONTROL_HEADERS.values()) <= set(KNOWN_OPTIONS)


class BadControlHeader(ValueError):
    """A malformed per-call control header; the message names it and the accepted values."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(message)
        self.header = header


@dataclass(frozen=True, slots=True)
class Route:
    """Where a cached request goes: its endpoint and its upstream's identity."""

    endpoint: Endpoint
    identity: str


def route(
    routes: Sequence[tuple[str, str]],
    method: str,
    url: str,
    path: str,
    organization: str,
    project: str,
) -> Route | None:
    """Return the route of a request the cache answers, or ``None`` to pass it through.

    :param routes: ``(path suffix, endpoint)``, longest suffix first (the providers').
    :param url: the whole URL, as text.
    :param path: the URL's path.
    :param organization: the ``OpenAI-Organization`` header, or ``""``.
    :param project: the ``OpenAI-Project`` header, or ``""``.
    """
    if method != "POST":
        return None
    found = next(((s, e) for s, e in routes if path.endswith(s)), None)
    if found is None:
        return None
    suffix, endpoint = found
    base, _, query = url.partition("?")
    prefix = base[: len(base) - len(suffix)].rstrip("/")
    if query:
        prefix += "?" + query
    return Route(endpoint, f"{prefix}|{organization}|{project}")


def _ttl(value: str) -> Any:
    if value.strip().lower() == "forever":
        return "forever"
    try:
        seconds = float(value)
    except ValueError:
        raise BadControlHeader(
            "llmcache-ttl",
            f"llmcache-ttl must be a number of seconds >= 0 or 'forever', not {value!r}",
        ) from None
    return int(seconds) if seconds.is_integer() else seconds


def _tier(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadControlHeader(
            "llmcache-tier", f"llmcache-tier must be a whole number >= 1, not {value!r}"
        ) from None


def _switch(header: str, value: str) -> bool:
    words = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}
    try:
        return words[value.strip().lower()]
    except KeyError:
        raise BadControlHeader(
            header, f"{header} must be one of {', '.join(words)}, not {value!r}"
        ) from None


def control_options(headers: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Return the ``cache_*`` options that per-call control headers carry.

    :param headers: ``(lower-case name, value)`` pairs.
    :raises BadControlHeader: a header value cannot be read (values are checked in depth
        with the options themselves, whose errors the caller reports with the header).
    """
    options: dict[str, Any] = {}
    for name, value in headers:
        option = CONTROL_HEADERS.get(name)
        if option is None:
            continue
        if option in options:
            raise BadControlHeader(name, f"the {name} header is given twice")
        if option == "cache_ttl":
            options[option] = _ttl(value)
        elif option == "cache_tier":
            options[option] = _tier(value)
        elif option == "cache_semantic":
            options[option] = _switch(name, value)
        else:
            options[option] = value
    return options


def header_of(option: str) -> str:
    """Return the request header that carries a ``cache_*`` option."""
    for header, name in CONTROL_HEADERS.items():
        if name == option:
            return header
    return option
