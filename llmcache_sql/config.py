"""Tier URLs: split llmcache's query options from SQLAlchemy's, pick and check the driver.

A tier URL is any SQLAlchemy URL. llmcache owns four query options and removes them
before SQLAlchemy sees the URL; every other option goes to SQLAlchemy and the driver
(``?charset=utf8mb4``, ``?sslmode=require``), checked against what the driver accepts
where the driver can say.

========================  ==========================================================
option                    meaning
========================  ==========================================================
``table``                 the entries table (default ``llmcache_entries``)
``pool_size``             pooled connections kept open (default 5; server dialects)
``purge_batch``           the most expired rows one purge deletes (default 500; 0: off)
``purge_interval``        seconds between two purges by one process (default 60)
========================  ==========================================================
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any

from llmcache.backends.base import reject_unknown_options
from llmcache.backends.urls import redact
from llmcache.errors import ConfigError, MissingExtraError

from . import dialects
from .dialects import Driver
from .schema import validate_table_name

__all__ = ["DEFAULT_TABLE", "OPTIONS", "SQLConfig", "parse_url"]

DEFAULT_TABLE = "llmcache_entries"
OPTIONS = ("table", "pool_size", "purge_batch", "purge_interval")
_SQLITE_QUERY = ("detect_types", "cached_statements", "uri")
_SQLITE_URI_QUERY = ("mode", "cache", "nolock", "immutable", "vfs", "psow", "modeof")
_SQLALCHEMY_QUERY = ("plugin",)
# MySQL options SQLAlchemy's dialect folds into the driver's ``ssl`` argument
_MYSQL_SSL_QUERY = (
    "ssl_ca",
    "ssl_key",
    "ssl_cert",
    "ssl_capath",
    "ssl_cipher",
    "ssl_check_hostname",
)


@dataclass(frozen=True)
class SQLConfig:
    """A parsed SQL tier URL.

    :param url: the SQLAlchemy URL to connect to (llmcache's options removed, driver named).
    :param family: ``"sqlite"``, ``"postgresql"`` or ``"mysql"``.
    :param driver: the driver, or ``None`` for one llmcache does not know.
    :param timeout: the per-call timeout in seconds.
    :param connect_args: the DBAPI arguments that enforce ``timeout``.
    """

    url: Any  # sqlalchemy.engine.URL, kept untyped so that this module imports without it
    family: str
    driver: Driver | None
    table: str = DEFAULT_TABLE
    pool_size: int = 5
    purge_batch: int = 500
    purge_interval: float = 60.0
    timeout: float = 1.0
    connect_args: dict[str, Any] = field(default_factory=dict)

    @property
    def redacted(self) -> str:
        """The URL without its password, for errors and logs."""
        return str(self.url.render_as_string(hide_password=True))

    @property
    def scheme(self) -> str:
        """The URL's scheme (``"postgresql+psycopg"``)."""
        return str(self.url.drivername)

    @property
    def is_async(self) -> bool:
        """Whether the driver is for ``create_async_engine``."""
        return self.driver is not None and (self.driver.is_async or self.driver.async_capable)


def _number(name: str, value: str, url: str, kind: type[int] | type[float], low: float) -> Any:
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or number < low:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name}={value!r} in {redact(url)!r} must be {what} >= {low:g}")
    return number


def _driver_options(driver: Driver | None) -> tuple[str, ...] | None:
    """Return the query options the driver accepts, or ``None`` when it cannot say."""
    if driver is None:
        return None
    if driver.family == "sqlite":
        return _SQLITE_QUERY
    try:
        if driver.name == "psycopg":
            from psycopg import pq

            return tuple(d.keyword.decode() for d in pq.Conninfo.get_defaults())
        if driver.name == "pymysql":
            import pymysql  # type: ignore[import-untyped]

            names = inspect.signature(pymysql.connections.Connection.__init__).parameters
            return (*(n for n in names if n != "self"), *_MYSQL_SSL_QUERY)
    except Exception:  # an unusual driver build: let the driver judge its options itself
        return None
    return None


def _check_query(url: Any, driver: Driver | None, raw: str) -> None:
    known = _driver_options(driver)
    if known is None:
        return
    query = dict(url.query)
    if (
        driver is not None
        and driver.family == "sqlite"
        and str(query.get("uri", "")).lower()
        in (
            "1",
            "true",
        )
    ):
        known = (*known, *_SQLITE_URI_QUERY)
    unknown = sorted(set(query) - set(known) - set(_SQLALCHEMY_QUERY))
    if unknown:
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"in {redact(raw)!r}; llmcache's: {', '.join(OPTIONS)}; "
            f"the driver's: {', '.join(sorted(known))}"
        )


def _sqlite_database(url: Any, raw: str) -> Any:
    """Check that a SQLite URL names a file; expand ``~`` in it."""
    database = url.database or ""
    query = dict(url.query)
    if url.host:
        raise ConfigError(
            f"a SQLite URL has no host: {redact(raw)!r} should be 'sqlite:////absolute/path.db' "
            "(four slashes) or 'sqlite:///relative/path.db'"
        )
    if database in ("", ":memory:") or query.get("mode") == "memory":
        raise ConfigError(
            f"a SQLite tier needs a file, as in 'sqlite:///path/cache.db', not {redact(raw)!r} "
            "(for a cache inside one process, use 'memory://')"
        )
    if database.startswith("~"):
        return url.set(database=os.path.expanduser(database))
    return url


def parse_url(
    url: str, *, timeout: float = 1.0, is_async: bool = False, options: dict[str, Any] | None = None
) -> SQLConfig:
    """Parse a SQL tier URL.

    :param is_async: pick an asyncio driver (``config.driver`` is ``None`` when none of the
        family is installed: the caller then runs the sync backend in a thread).
    :raises ConfigError: a malformed URL or option.
    :raises MissingExtraError: SQLAlchemy or the URL's driver is not installed.
    """
    scheme = url.split("://", 1)[0]
    reject_unknown_options(f"{scheme}:// tiers", options or {}, ())
    try:
        import sqlalchemy
    except ImportError as exc:
        raise MissingExtraError(f"{scheme}:// tiers", "sql", "sqlalchemy") from exc
    if not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}")
    try:
        parsed = sqlalchemy.make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise ConfigError(f"{redact(url)!r} is not a SQLAlchemy URL") from exc
    backend = parsed.get_backend_name()
    family = dialects.family_of(backend)
    if family is None:
        raise ConfigError(
            f"{redact(url)!r} is not a SQLite, PostgreSQL or MySQL/MariaDB URL "
            f"(schemes: sqlite, postgresql, mysql, mariadb)"
        )
    if backend == "postgres":
        backend = "postgresql"

    query = dict(parsed.query)
    ours: dict[str, str] = {}
    for option in OPTIONS:
        value = query.pop(option, None)
        if isinstance(value, tuple):
            raise ConfigError(f"{option} is given more than once in {redact(url)!r}")
        if value is not None:
            ours[option] = value
    parsed = parsed.difference_update_query(OPTIONS)
    settings: dict[str, Any] = {}
    if "table" in ours:
        settings["table"] = validate_table_name(ours["table"])
    if "pool_size" in ours:
        settings["pool_size"] = _number("pool_size", ours["pool_size"], url, int, 1)
    if "purge_batch" in ours:
        settings["purge_batch"] = _number("purge_batch", ours["purge_batch"], url, int, 0)
    if "purge_interval" in ours:
        settings["purge_interval"] = _number(
            "purge_interval", ours["purge_interval"], url, float, 0
        )

    named = parsed.get_driver_name() if "+" in parsed.drivername else None
    if is_async:
        driver = dialects.async_driver(family, named)
    else:
        driver = dialects.sync_driver(family, named)
        if driver is not None and not dialects.installed(driver.module):
            raise dialects.missing_driver(scheme, driver, driver.module)
    driver_name = driver.name if driver is not None else named
    drivername = backend if driver_name is None else f"{backend}+{driver_name}"
    parsed = parsed.set(drivername=drivername)

    _check_query(parsed, driver, url)
    if family == "sqlite":
        parsed = _sqlite_database(parsed, url)
    if family == "mysql" and "charset" not in query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return SQLConfig(
        url=parsed,
        family=family,
        driver=driver,
        timeout=timeout,
        connect_args=dialects.connect_args(driver, timeout, dict(parsed.query)),
        **settings,
    )
