"""``memcached://`` URLs: servers and query options.

::

    memcached://host:11211
    memcached://h1:11211,h2:11212?timeout=0.5&pool_size=16
    memcached://[::1]:11211
    memcached:///run/memcached/memcached.sock
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from llmcache.backends.base import reject_unknown_options
from llmcache.backends.urls import redact
from llmcache.errors import ConfigError

from .invalidation import DEFAULT_MAX_RULES
from .values import DEFAULT_MAX_ITEM_SIZE

__all__ = ["DEFAULT_PORT", "OPTIONS", "MemcachedConfig", "parse_url"]

DEFAULT_PORT = 11211
OPTIONS = ("dead_timeout", "max_item_size", "max_rules", "max_ttl", "pool_size", "timeout")


@dataclass(frozen=True, slots=True)
class MemcachedConfig:
    """What a ``memcached://`` URL says.

    :param servers: ``(host, port)`` tuples or Unix socket paths, in URL order.
    :param timeout: seconds for connecting and for each socket operation (``None``: the
        factory's ``timeout``).
    """

    servers: tuple[tuple[str, int] | str, ...]
    timeout: float | None = None
    max_ttl: float | None = None
    pool_size: int | None = None
    dead_timeout: float = 5.0
    max_item_size: int = DEFAULT_MAX_ITEM_SIZE
    max_rules: int = DEFAULT_MAX_RULES


def _server(part: str, url: str) -> tuple[str, int]:
    host, port = part, ""
    if part.startswith("["):
        host, _, rest = part[1:].partition("]")
        if rest and not rest.startswith(":"):
            host = ""
        port = rest[1:]
    elif ":" in part:
        host, _, port = part.rpartition(":")
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        number = 0
    if not host or not 0 < number < 65536:
        raise ConfigError(f"bad memcached server {part!r} in {redact(url)!r}; use host:port")
    return host, number


def _number(name: str, value: str, url: str, *, integer: bool = False) -> float:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        number = -1
    if not number > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{name}={value!r} in {redact(url)!r} must be {kind}")
    return number


def parse_url(url: str) -> MemcachedConfig:
    """Read a ``memcached://`` URL.

    :raises ConfigError: no server, a bad server or option, an unknown option, or a
        password (memcached's text protocol has no authentication).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "memcached":
        raise ConfigError(f"not a memcached:// URL: {redact(url)!r}")
    netloc = parts.netloc
    if "@" in netloc:
        raise ConfigError(
            f"memcached:// URLs take no user or password (memcached's text protocol has no "
            f"authentication): {redact(url)!r}"
        )
    servers: list[tuple[str, int] | str]
    if netloc:
        servers = [_server(part.strip(), url) for part in netloc.split(",") if part.strip()]
    elif parts.path not in ("", "/"):
        servers = [parts.path]  # a Unix socket
    else:
        servers = []
    if not servers:
        raise ConfigError(f"{redact(url)!r} names no memcached server; use memcached://host:11211")
    if len(set(servers)) != len(servers):
        raise ConfigError(f"{redact(url)!r} names a memcached server twice")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    reject_unknown_options(redact(url), query, OPTIONS)
    options: dict[str, float | int] = {}
    for name in ("timeout", "max_ttl", "dead_timeout"):
        if name in query:
            options[name] = _number(name, query[name], url)
    for name in ("pool_size", "max_item_size", "max_rules"):
        if name in query:
            options[name] = int(_number(name, query[name], url, integer=True))
    return MemcachedConfig(tuple(servers), **options)  # type: ignore[arg-type]
