"""Tier URLs: the options every tier accepts, labels, and password redaction."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from llmcache.errors import ConfigError

__all__ = ["TierURL", "parse_tier_url", "password", "redact"]

_KINDS = {
    "memory": "memory",
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "redis+cluster": "redis-cluster",
    "rediss+cluster": "redis-cluster",
    "redis+sentinel": "redis-sentinel",
    "memcached": "memcached",
}
_CORE_OPTIONS = ("max_ttl", "timeout")


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    The user information ends at the last ``@`` before the query, so a password holding
    ``@`` or ``/`` is hidden whole.
    """
    secret = password(url)
    if not secret:
        return url
    scheme, _, rest = url.partition("://")
    head, query_sep, query = rest.partition("?")
    userinfo, _, hosts = head.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hosts}{query_sep}{query}"


def password(url: str) -> str | None:
    """Return the password of a URL, or ``None``."""
    _, sep, rest = url.partition("://")
    userinfo, at, _ = rest.partition("?")[0].rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1]


@dataclass(frozen=True, slots=True)
class TierURL:
    """A tier URL split into what the core uses and what the backend gets.

    :param url: the URL for the backend factory, with ``max_ttl`` and ``timeout`` removed.
    :param scheme: the full scheme (``"postgresql+psycopg"``).
    :param kind: the label kind (``"postgresql"``), or the scheme for a plugin's own.
    :param max_ttl: the cap on TTLs written to this tier, or ``None``.
    :param timeout: the per-call timeout for this tier, or ``None`` for the client default.
    """

    url: str
    scheme: str
    kind: str
    max_ttl: float | None
    timeout: float | None

    @property
    def redacted(self) -> str:
        """The URL without its password, for logs and errors."""
        return redact(self.url)


def _seconds(name: str, value: str, url: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(
            f"{name}={value!r} in {redact(url)!r} must be a positive number of seconds"
        )
    return seconds


def _encode_password(url: str) -> str:
    """Percent-encode the characters of a password that would end the user information early.

    Users paste passwords holding ``@`` or ``/`` raw; drivers would then read part of the
    password as the host (and echo it in their errors). An already encoded password is kept.
    """
    secret = password(url)
    if not secret or not any(c in secret for c in "@/?#"):
        return url
    scheme, _, rest = url.partition("://")
    head = rest.partition("?")[0]
    userinfo, _, hosts = head.rpartition("@")
    user = userinfo.split(":", 1)[0]
    safe = "".join(f"%{ord(c):02X}" if c in "@/?#" else c for c in secret)
    return f"{scheme}://{user}:{safe}@{hosts}{rest[len(head) :]}"


def parse_tier_url(url: str) -> TierURL:
    """Split a tier URL into the core's options and the backend's URL.

    :raises ConfigError: the URL has no scheme, or ``max_ttl``/``timeout`` is not a
        positive number.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"a tier must be a URL such as 'memory://' or 'redis://localhost:6379/0', "
            f"not {redact(str(url))!r}"
        )
    url = _encode_password(url)
    scheme = url.split("://", 1)[0].lower()
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    core = {k: v for k, v in query if k in _CORE_OPTIONS}
    rest = [(k, v) for k, v in query if k not in _CORE_OPTIONS]
    max_ttl = _seconds("max_ttl", core["max_ttl"], url) if "max_ttl" in core else None
    timeout = _seconds("timeout", core["timeout"], url) if "timeout" in core else None
    backend_url = url
    if core:  # replace only the query: rebuilding the URL would lose sqlite:////abs slashes
        base = url.split("?", 1)[0]
        backend_url = f"{base}?{urlencode(rest)}" if rest else base
    base = scheme.split("+", 1)[0]
    kind = _KINDS.get(scheme) or _KINDS.get(base) or scheme
    return TierURL(backend_url, scheme, kind, max_ttl, timeout)
