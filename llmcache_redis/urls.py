"""Redis tier URLs: parsing, validation and the client options they give.

Accepted forms (the core has already removed ``max_ttl`` and ``timeout``)::

    redis://[[user]:password@]host[:port][/db]
    rediss://...                                   (TLS)
    unix://[[user]:password@]/path/to/redis.sock[?db=N]
    redis+cluster://[[user]:password@]host:port[,host:port...]
    rediss+cluster://...                           (TLS)
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]

Query options: ``pool_size`` (connections per server), ``batch_size`` (keys per SCAN and
UNLINK batch in ``clear``), ``client_name``, and for TLS ``ssl_cert_reqs``, ``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``. Anything else is a :class:`~llmcache.ConfigError`, as is
a malformed URL; the URL in the message never shows its password.

A Sentinel URL names the sentinels (port 26379 by default), the service they watch and
the database, as redis-py's ``Sentinel`` and other clients take them; its user and
password are the data servers' (the sentinels are asked without one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from llmcache.backends.base import reject_unknown_options
from llmcache.backends.urls import redact
from llmcache.errors import ConfigError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_POOL_SIZE",
    "RedisURL",
    "parse_redis_url",
    "redact_redis_url",
]

DEFAULT_POOL_SIZE = 50
DEFAULT_BATCH_SIZE = 1000
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379

SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel")
_COMMON_OPTIONS = ("pool_size", "batch_size", "client_name")
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = ("none", "optional", "required")


@dataclass(frozen=True)
class RedisURL:
    """A validated Redis tier URL.

    :param redacted: the URL with its password hidden, for reprs and messages.
    :param scheme: ``redis``, ``rediss``, ``unix``, ``redis+cluster``, ``rediss+cluster``
        or ``redis+sentinel``.
    :param cluster: a Redis Cluster (``redis+cluster://``) rather than one server.
    :param nodes: ``(host, port)`` of the server, the cluster's startup nodes, or the
        sentinels; empty for a Unix socket.
    :param socket_path: the Unix socket's path, for ``unix://``.
    :param db: the database number (always 0 on a cluster).
    :param pool_size: the most connections kept to each server.
    :param batch_size: keys per SCAN/UNLINK batch when clearing.
    :param connection: keyword arguments for redis-py's connections (credentials, TLS).
    :param service: the service name the sentinels watch (``redis+sentinel://`` only).
    """

    redacted: str
    scheme: str
    cluster: bool
    nodes: tuple[tuple[str, int], ...]
    socket_path: str | None
    db: int
    pool_size: int
    batch_size: int
    connection: dict[str, Any] = field(repr=False)
    service: str | None = None

    @property
    def kind(self) -> str:
        """``"redis-cluster"``, ``"redis-sentinel"`` or ``"redis"``."""
        if self.cluster:
            return "redis-cluster"
        return "redis-sentinel" if self.service is not None else "redis"


def _malformed(url: str, why: str) -> ConfigError:
    return ConfigError(f"malformed Redis URL {redact_redis_url(url)!r}: {why}")


def _positive_int(name: str, value: str, url: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise _malformed(url, f"{name}={value!r} must be a positive integer")
    return number


def _parse_host(
    text: str, url: str, *, need_port: bool, default_port: int = DEFAULT_PORT
) -> tuple[str, int]:
    """Split ``host[:port]`` or ``[v6]:port``."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise _malformed(url, f"bad IPv6 address {text!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
        if ":" in port_text:
            raise _malformed(url, f"bad host {text!r} (put IPv6 addresses in brackets)")
    if not host:
        raise _malformed(url, f"missing host in {text!r}")
    if not port_text:
        if need_port:
            raise _malformed(url, f"cluster node {text!r} needs a port")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _malformed(url, f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _split_authority(rest: str) -> tuple[str | None, str]:
    """Split what follows ``scheme://`` into user info (or ``None``) and the remainder.

    The user info ends at the *last* ``@`` before the query, so that a password holding a
    raw ``@`` or ``/`` (which should be percent-encoded, but often is not) is still taken
    whole, and never shown.
    """
    head = rest.split("?", 1)[0].split("#", 1)[0]
    at = head.rfind("@")
    if at < 0:
        return None, rest
    return rest[:at], rest[at + 1 :]


def redact_redis_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***`` (raw ``@`` or ``/`` included)."""
    scheme, sep, rest = url.partition("://")
    userinfo, remainder = _split_authority(rest) if sep else (None, rest)
    if userinfo is None or ":" not in userinfo:
        return redact(url)
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{remainder}"


def parse_redis_url(url: str) -> RedisURL:
    """Validate a Redis tier URL and return what the backend needs to connect.

    :raises ConfigError: the URL is malformed or has an unknown or bad option; the message
        names the URL with its password redacted.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise _malformed(url, f"the scheme must be one of {', '.join(SCHEMES)}")
    cluster = scheme.endswith("+cluster")
    sentinel = scheme == "redis+sentinel"
    tls = scheme.startswith("rediss")
    # urlsplit would choke on a comma-separated host list: split the authority ourselves
    userinfo, remainder = _split_authority(rest)
    if userinfo is not None and scheme == "unix" and "/" in userinfo:
        userinfo, remainder = None, rest  # an "@" in the socket's path, not user info
    end = min((i for i in map(remainder.find, "/?#") if i >= 0), default=len(remainder))
    hosts = remainder[:end]
    parts = urlsplit("x://h" + remainder[end:])
    if parts.fragment:
        raise _malformed(url, "a fragment ('#...') has no meaning here")
    username = password = None
    if userinfo is not None:
        user, colon, secret = userinfo.partition(":")
        username, password = (unquote(user) or None), (unquote(secret) if colon else None)
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in query:
            raise _malformed(url, f"option {name!r} is given twice")
        query[name] = value

    known = _COMMON_OPTIONS + (_TLS_OPTIONS if tls else ()) + (("db",) if scheme == "unix" else ())
    reject_unknown_options(repr(redact_redis_url(url)), query, known)

    socket_path = None
    service = None
    nodes: tuple[tuple[str, int], ...]
    db = 0
    if sentinel:
        if not hosts:
            raise _malformed(url, "missing sentinel host")
        nodes = tuple(
            _parse_host(e, url, need_port=False, default_port=DEFAULT_SENTINEL_PORT)
            for e in hosts.split(",")
        )
        service, db = _service_and_db(unquote(parts.path), url)
    elif scheme == "unix":
        if hosts:
            raise _malformed(url, "a unix:// URL takes a path, not a host (unix:///run/redis.sock)")
        socket_path = unquote(parts.path)
        if socket_path in ("", "/"):
            raise _malformed(url, "missing socket path (unix:///run/redis.sock)")
        if "db" in query:
            db = _database(query.pop("db"), url)
        nodes = ()
    else:
        if not hosts:
            raise _malformed(url, "missing host")
        entries = hosts.split(",")
        if not cluster and len(entries) > 1:
            raise _malformed(url, "several hosts need redis+cluster://")
        nodes = tuple(_parse_host(e, url, need_port=False) for e in entries)
        path = parts.path.strip("/")
        if path:
            db = _database(path, url)
            if cluster and db != 0:
                raise _malformed(url, "Redis Cluster has only database 0")

    connection: dict[str, Any] = {}
    if username is not None:
        connection["username"] = username
    if password is not None:
        connection["password"] = password
    if "client_name" in query:
        connection["client_name"] = query["client_name"]
    if tls:
        connection["ssl"] = True
        reqs = query.get("ssl_cert_reqs", "required").lower()
        if reqs not in _CERT_REQS:
            raise _malformed(
                url, f"ssl_cert_reqs={query['ssl_cert_reqs']!r}; known: {', '.join(_CERT_REQS)}"
            )
        connection["ssl_cert_reqs"] = reqs
        connection["ssl_check_hostname"] = reqs == "required"
        for name in _TLS_OPTIONS[1:]:
            if name in query:
                connection[name] = query[name]

    return RedisURL(
        redacted=redact_redis_url(url),
        scheme=scheme,
        cluster=cluster,
        nodes=nodes,
        socket_path=socket_path,
        db=db,
        pool_size=_positive_int("pool_size", query["pool_size"], url)
        if "pool_size" in query
        else DEFAULT_POOL_SIZE,
        batch_size=_positive_int("batch_size", query["batch_size"], url)
        if "batch_size" in query
        else DEFAULT_BATCH_SIZE,
        connection=connection,
        service=service,
    )


def _service_and_db(path: str, url: str) -> tuple[str, int]:
    """Split a Sentinel URL's ``/service[/db]``."""
    service, _, db_text = path.strip("/").partition("/")
    if not service:
        raise _malformed(
            url, "missing service name (redis+sentinel://host:26379,host:26380/mymaster/0)"
        )
    if "/" in db_text:
        raise _malformed(url, f"the path must be /service[/db], not {path!r}")
    return service, (_database(db_text, url) if db_text else 0)


def _database(text: str, url: str) -> int:
    if not text.isdigit():
        raise _malformed(url, f"database {text!r} is not a number")
    return int(text)
