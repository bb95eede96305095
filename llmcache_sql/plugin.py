"""Register the SQL tiers with llmcache (entry point ``sql`` in the ``llmcache`` group).

Importing this module never imports SQLAlchemy or a driver: the factories do, on first
use of a SQL tier URL, and say which extra to install when one is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmcache import hookimpl
from llmcache.backends.base import AsyncCacheBackend, CacheBackend, SyncToAsync
from llmcache.errors import MissingExtraError
from llmcache.hookspecs import RegisterBackend

__all__ = ["SCHEMES", "async_from_url", "from_url", "llmcache_register_backends"]

log = logging.getLogger("llmcache.sql")

SCHEMES = (
    "sqlite",
    "sqlite+pysqlite",
    "sqlite+aiosqlite",
    "postgresql",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+asyncpg",
    "postgres",
    "mysql",
    "mysql+pymysql",
    "mysql+mysqldb",
    "mysql+aiomysql",
    "mariadb",
    "mariadb+pymysql",
    "mariadb+mysqldb",
    "mariadb+aiomysql",
)


@contextmanager
def _needs_sqlalchemy(url: str) -> Iterator[None]:
    """Turn SQLAlchemy missing into :class:`~llmcache.MissingExtraError` naming the extra."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "sqlalchemy":
            raise
        scheme = url.split(":", 1)[0]
        raise MissingExtraError(f"the tier URL scheme {scheme!r}", "sql", "sqlalchemy") from exc


def from_url(url: str, *, timeout: float = 1.0, **options: Any) -> CacheBackend:
    """Build a SQL tier from any SQLAlchemy URL (no connection is made).

    :param timeout: the per-call timeout in seconds: SQLite's busy timeout, the server's
        connect and statement timeouts.
    :raises ConfigError: a malformed URL or an unknown option.
    :raises MissingExtraError: SQLAlchemy or the driver is not installed.
    """
    with _needs_sqlalchemy(url):
        from .backend import SQLBackend
        from .config import parse_url

        return SQLBackend(parse_url(url, timeout=timeout, options=options))


def async_from_url(url: str, *, timeout: float = 1.0, **options: Any) -> AsyncCacheBackend:
    """Build a SQL tier for asyncio clients, on the family's asyncio driver.

    ``sqlite`` runs on aiosqlite, ``postgresql`` on psycopg's asyncio flavour (or
    asyncpg), ``mysql``/``mariadb`` on aiomysql. Where no asyncio driver is installed the
    sync tier runs in a worker thread instead.
    """
    with _needs_sqlalchemy(url):
        from .config import parse_url

        config = parse_url(url, timeout=timeout, is_async=True, options=options)
    if not config.is_async:
        log.info(
            "llmcache: no asyncio driver for %s; the sync driver runs in a worker thread",
            config.redacted,
        )
        return SyncToAsync(from_url(url, timeout=timeout, **options))
    with _needs_sqlalchemy(url):
        from .async_backend import AsyncSQLBackend

    return AsyncSQLBackend(config)


@hookimpl
def llmcache_register_backends(register: RegisterBackend) -> None:
    """Serve SQLite, PostgreSQL and MySQL/MariaDB URLs."""
    for scheme in SCHEMES:
        register(scheme, from_url, async_factory=async_from_url)
