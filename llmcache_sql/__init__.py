"""llmcache_sql: SQL cache tiers (SQLite, PostgreSQL, MySQL/MariaDB) on SQLAlchemy 2.

Installed with ``pip install 'llmcache[sql]'`` and registered through the ``llmcache``
entry-point group; a tier is any SQLAlchemy URL::

    CachedClient(OpenAI(), tiers=["sqlite:///cache.db"])

The backend classes are imported on first access, so that importing this package (as
llmcache's plugin loader does) never needs SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .plugin import async_from_url, from_url

if TYPE_CHECKING:
    from .async_backend import AsyncSQLBackend
    from .backend import SQLBackend

__all__ = ["AsyncSQLBackend", "SQLBackend", "async_from_url", "from_url"]


def __getattr__(name: str) -> Any:
    if name == "SQLBackend":
        from .backend import SQLBackend

        return SQLBackend
    if name == "AsyncSQLBackend":
        from .async_backend import AsyncSQLBackend

        return AsyncSQLBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
