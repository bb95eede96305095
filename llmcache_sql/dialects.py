"""What llmcache needs to know about each SQL dialect and driver.

Three families are served: ``sqlite``, ``postgresql`` and ``mysql`` (MariaDB included).
For each driver this module knows the Python module to import, the pip package and the
llmcache extra that provide it, whether it is an asyncio driver, and how to turn the
tier's per-call timeout into the driver's connect, read and statement timeouts.

Nothing here imports a driver: :func:`installed` only asks the import system whether the
module could be found.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmcache.errors import MissingExtraError

__all__ = [
    "DRIVERS",
    "FAMILIES",
    "Driver",
    "async_driver",
    "connect_args",
    "default_driver",
    "family_of",
    "installed",
    "missing_driver",
    "sync_driver",
    "usable",
]

FAMILIES = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}


@dataclass(frozen=True, slots=True)
class Driver:
    """One DBAPI driver as SQLAlchemy names it (``postgresql+psycopg``'s ``psycopg``).

    :param name: SQLAlchemy's driver name.
    :param family: ``"sqlite"``, ``"postgresql"`` or ``"mysql"``.
    :param module: the module SQLAlchemy imports.
    :param package: the pip package that provides it.
    :param extra: the llmcache extra that installs it, or ``None`` when none does.
    :param is_async: an asyncio-only driver (``aiosqlite``, ``asyncpg``, ``aiomysql``).
    :param async_capable: serves ``create_async_engine`` too (psycopg 3 picks its asyncio
        flavour by itself).
    """

    name: str
    family: str
    module: str
    package: str
    extra: str | None
    is_async: bool = False
    async_capable: bool = False


DRIVERS = {
    (d.family, d.name): d
    for d in (
        Driver("pysqlite", "sqlite", "sqlite3", "sqlite3 (Python's standard library)", None),
        Driver("aiosqlite", "sqlite", "aiosqlite", "aiosqlite", "sql", is_async=True),
        Driver("psycopg", "postgresql", "psycopg", "psycopg[binary]", "postgresql", False, True),
        Driver("psycopg2", "postgresql", "psycopg2", "psycopg2-binary", None),
        Driver("asyncpg", "postgresql", "asyncpg", "asyncpg", None, is_async=True),
        Driver("pymysql", "mysql", "pymysql", "pymysql", "mysql"),
        Driver("mysqldb", "mysql", "MySQLdb", "mysqlclient", None),
        Driver("aiomysql", "mysql", "aiomysql", "aiomysql", "mysql", is_async=True),
        Driver("asyncmy", "mysql", "asyncmy", "asyncmy", None, is_async=True),
    )
}

# preferred drivers when a URL names none, or names one of the other flavour
_SYNC_PREFERENCE = {
    "sqlite": ("pysqlite",),
    "postgresql": ("psycopg", "psycopg2"),
    "mysql": ("pymysql", "mysqldb"),
}
_ASYNC_PREFERENCE = {
    "sqlite": ("aiosqlite",),
    "postgresql": ("psycopg", "asyncpg"),
    "mysql": ("aiomysql", "asyncmy"),
}


def family_of(backend_name: str) -> str | None:
    """Return the family of a URL's backend name (``"mariadb"`` → ``"mysql"``), or ``None``."""
    return FAMILIES.get(backend_name)


def installed(module: str) -> bool:
    """Tell whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def usable(driver: Driver) -> bool:
    """Tell whether ``driver`` is installed and works with what else is installed.

    aiomysql (0.3.2, the latest) escapes ``bytes`` with PyMySQL's ``escape_bytes_prefixed``,
    which PyMySQL 1.2.1 removed and 1.2.3 turned into a placeholder string: with those,
    aiomysql fails to import or fails on every ``bytes`` parameter.
    """
    if not installed(driver.module):
        return False
    if driver.name == "aiomysql":
        try:
            from pymysql import converters  # type: ignore[import-untyped]
        except ImportError:
            return False
        return callable(getattr(converters, "escape_bytes_prefixed", None))
    return True


def _lookup(family: str, name: str) -> Driver | None:
    return DRIVERS.get((family, name))


def default_driver(family: str) -> Driver:
    """Return the preferred installed sync driver of ``family`` (the first if none is)."""
    names = _SYNC_PREFERENCE[family]
    for name in names:
        driver = DRIVERS[family, name]
        if installed(driver.module):
            return driver
    return DRIVERS[family, names[0]]


def sync_driver(family: str, name: str | None) -> Driver | None:
    """Return the sync driver to use for a URL's driver ``name`` (``None``: the default).

    An asyncio driver is swapped for a sync one of the same family. ``None`` is returned
    for a driver llmcache does not know; SQLAlchemy is then left to deal with it.
    """
    if name is None:
        return default_driver(family)
    driver = _lookup(family, name)
    if driver is None:
        return None
    return default_driver(family) if driver.is_async else driver


def async_driver(family: str, name: str | None) -> Driver | None:
    """Return the asyncio driver for a URL's driver ``name``, or ``None`` when none is installed.

    ``sqlite`` becomes ``aiosqlite``, ``psycopg``/``psycopg2`` become psycopg's asyncio
    flavour (else ``asyncpg``), ``pymysql``/``mysqldb`` become ``aiomysql`` (else
    ``asyncmy``). An asyncio driver named in the URL is kept.
    """
    if name is not None:
        named = _lookup(family, name)
        if named is not None and (named.is_async or named.async_capable):
            return named if usable(named) else None
        if named is None:
            return None
    for candidate in _ASYNC_PREFERENCE[family]:
        driver = DRIVERS[family, candidate]
        if usable(driver):
            return driver
    return None


def missing_driver(scheme: str, driver: Driver | None, module: str) -> MissingExtraError:
    """Build the error for a driver that is not installed, naming what to install."""
    if driver is not None and driver.extra is not None:
        return MissingExtraError(f"{scheme}:// tiers", driver.extra, driver.package)
    # no llmcache extra installs this driver: say so rather than point at a wrong extra
    package = module if driver is None else driver.package
    family = scheme.split("+", 1)[0] if driver is None else driver.family
    extra = {"postgres": "postgresql", "mariadb": "mysql", "sqlite": "sql"}.get(family, family)
    error = MissingExtraError(f"{scheme}:// tiers", "sql", package)
    error.args = (
        f"{scheme}:// tiers need the {package!r} package, which no llmcache extra "
        f"installs: `pip install '{package}'` (or use the driver that "
        f"`pip install 'llmcache[{extra}]'` provides)",
    )
    return error


def connect_args(driver: Driver | None, timeout: float, query: Mapping[str, Any]) -> dict[str, Any]:
    """Return the DBAPI connect arguments that bound each call by ``timeout`` seconds.

    SQLite gets a busy timeout (how long to wait for another process's write lock);
    PostgreSQL a connect timeout and a server-side ``statement_timeout`` (plus a TCP user
    timeout for a peer that vanished); MySQL/MariaDB connect, read and write timeouts.
    Options the URL's query string already sets are left alone, except that a
    PostgreSQL ``options`` string gets the statement timeout appended unless it sets one.

    :param driver: the driver, or ``None`` for one llmcache does not know (no arguments).
    """
    if driver is None:
        return {}
    ms = max(1, math.ceil(timeout * 1000))
    whole = max(1, math.ceil(timeout))
    args: dict[str, Any]
    if driver.family == "sqlite":
        args = {"timeout": timeout}
    elif driver.name in ("psycopg", "psycopg2"):
        args = {
            # libpq counts whole seconds and treats 1 as 2
            "connect_timeout": max(2, whole),
            "options": f"-c statement_timeout={ms}",
        }
        if driver.name != "psycopg2":
            args["tcp_user_timeout"] = max(ms, 1000)
    elif driver.name == "asyncpg":
        args = {
            "timeout": timeout,
            "command_timeout": timeout,
            "server_settings": {"statement_timeout": str(ms)},
        }
    elif driver.name == "pymysql":
        args = {"connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout}
    elif driver.name == "mysqldb":
        args = {"connect_timeout": whole, "read_timeout": whole, "write_timeout": whole}
    elif driver.name in ("aiomysql", "asyncmy"):
        args = {"connect_timeout": timeout}
    else:  # pragma: no cover - every known driver is listed above
        args = {}
    user_options = query.get("options")
    if isinstance(user_options, str) and "options" in args:
        if "statement_timeout" in user_options:
            del args["options"]
        else:
            args["options"] = f"{user_options} {args['options']}"
    return {name: value for name, value in args.items() if name == "options" or name not in query}
