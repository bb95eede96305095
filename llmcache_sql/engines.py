"""SQLAlchemy engines for a tier: pools, timeouts, autocommit, SQLite pragmas.

Every connection runs in autocommit mode: each statement the tier issues is atomic on its
own (an upsert, a bounded ``DELETE``), so no transaction is ever left open on a pooled
connection and returning one to the pool costs no ``ROLLBACK`` round trip. The few
multi-statement writes (a SQLite batch) open and close their transaction explicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from llmcache.errors import ConfigError, MissingExtraError

from . import dialects
from .config import SQLConfig
from .watchdog import bounded_connect, watch_statements

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "POOL_RECYCLE",
    "POSITIONAL",
    "SQLITE_PRAGMAS",
    "WATCH_SHARE",
    "async_engine",
    "sqlite_setup",
    "sync_engine",
]

WATCH_SHARE = 0.8  # asyncio: cut a late call's socket before the client cancels the call
POSITIONAL = frozenset({"psycopg", "psycopg2"})  # drivers that take ``%s`` as well as ``%(name)s``
POOL_RECYCLE = 1800  # seconds; servers drop idle connections (MySQL's wait_timeout)
SQLITE_PRAGMAS = (
    # WAL makes a commit durable against a crash of the process, not of the machine:
    # right for a cache, and it spares an fsync per write
    "PRAGMA synchronous=NORMAL",
)


def sqlite_setup(dbapi_connection: Any, _record: Any = None) -> None:
    """Prepare a new SQLite connection (a ``connect`` event listener)."""
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _engine_options(config: SQLConfig, *, is_async: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "connect_args": dict(config.connect_args),
        "isolation_level": "AUTOCOMMIT",
    }
    if config.family != "sqlite":  # SQLite's pool is SQLAlchemy's choice (file, threads)
        options.update(
            pool_size=config.pool_size,
            pool_timeout=config.timeout,
            pool_recycle=POOL_RECYCLE,
        )
        if not is_async:
            # autocommit leaves nothing to roll back; an asyncio pool keeps its reset,
            # which also cleans up after a call cancelled by the tier's timeout
            options["pool_reset_on_return"] = None
    if not is_async and config.driver is not None and config.driver.name in POSITIONAL:
        # the statements then take a tuple of values, as on SQLite and MySQL: no dict to
        # build per call, and nothing for psycopg to look up by name
        options["paramstyle"] = "format"
    return options


def _missing(config: SQLConfig, exc: ImportError) -> MissingExtraError:
    module = (exc.name or "").split(".")[0] or str(exc)
    driver = next((d for d in dialects.DRIVERS.values() if d.module == module), None)
    return dialects.missing_driver(config.scheme, driver, module)


def sync_engine(config: SQLConfig) -> sa.Engine:
    """Create the tier's engine (no connection is made).

    :raises MissingExtraError: the driver cannot be imported.
    """
    try:
        engine = sa.create_engine(config.url, **_engine_options(config, is_async=False))
    except ImportError as exc:
        raise _missing(config, exc) from exc
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"{config.redacted!r}: {exc}") from exc
    if config.family == "sqlite":
        sa.event.listen(engine, "connect", sqlite_setup)
    if config.family == "postgresql":
        sa.event.listen(engine, "do_connect", _bounded_connect(config.timeout))
        watch_statements(engine, config.timeout)
    return engine


def _bounded_connect(timeout: float) -> Any:
    """A ``do_connect`` listener that gives up connecting after ``timeout`` seconds."""

    def connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return bounded_connect(
            lambda: dialect.connect(*cargs, **cparams),
            timeout,
            dialect.loaded_dbapi.OperationalError,
        )

    return connect


def async_engine(config: SQLConfig) -> AsyncEngine:
    """Create the tier's asyncio engine (no connection is made).

    :raises MissingExtraError: the driver cannot be imported.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    try:
        engine = create_async_engine(config.url, **_engine_options(config, is_async=True))
    except ImportError as exc:
        raise _missing(config, exc) from exc
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"{config.redacted!r}: {exc}") from exc
    if config.family == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", sqlite_setup)
    if config.family == "postgresql":
        watch_statements(engine.sync_engine, config.timeout * WATCH_SHARE)
    return engine
