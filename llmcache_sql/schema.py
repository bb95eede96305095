"""The tables behind a SQL tier, how keys are stored in them, and their creation.

One tier uses three tables, named after the ``table`` option (default ``llmcache_entries``):

``<table>``
    ``key`` (primary key), ``full_key``, ``namespace``, ``value``, ``created``, ``expires``,
    ``size``; indexed on ``expires`` (the purge) and on ``(namespace, created)`` (clears by
    namespace and age).
``<table>_meta``
    ``name``/``value`` pairs; ``schema_version`` records the layout for later migrations.
``<table>_locks``
    short-lived cross-process locks (``name``, ``token``, ``expires``).

Keys are stored as they are where the dialect can index them whole (SQLite: always;
PostgreSQL and MySQL/MariaDB: up to :data:`KEY_LIMIT` UTF-8 bytes). A longer key is stored
as ``<prefix>#<sha256>`` and kept whole in ``full_key`` (``NULL`` otherwise), so a glob
still matches the full key and a read checks that the row is really the key's.

Creation is idempotent and safe when processes race: ``CREATE ... IF NOT EXISTS`` under a
dialect lock where the dialect needs one (a PostgreSQL advisory lock, MySQL ``GET_LOCK``).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from llmcache.backends import split_physical_key
from llmcache.errors import ConfigError

__all__ = [
    "KEY_LIMIT",
    "NAMESPACE_LIMIT",
    "SCHEMA_VERSION",
    "Schema",
    "build_schema",
    "ensure_schema",
    "entry_row",
    "key_text",
    "namespace_of",
    "storage_key",
    "validate_table_name",
    "value_bytes",
]

SCHEMA_VERSION = 1
KEY_LIMIT = 512  # bytes a PostgreSQL or MySQL key may take before it is hashed
NAMESPACE_LIMIT = 255  # longer namespaces are stored as "" (never used to narrow a clear)
_HASHED_SUFFIX = 1 + 64  # "#" and a hex SHA-256
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}\Z")
_MYSQL_OPTIONS = {"engine": "InnoDB", "charset": "utf8mb4", "collate": "utf8mb4_bin"}


def validate_table_name(name: str) -> str:
    """Return ``name`` if it can name the tables and their indexes on every dialect.

    :raises ConfigError: not a plain identifier of at most 48 characters.
    """
    if not _TABLE_NAME.match(name):
        raise ConfigError(
            f"table={name!r} must be a letter or underscore followed by at most 47 letters, "
            "digits or underscores"
        )
    return name


def storage_key(key: str, limit: int | None) -> tuple[str, str | None]:
    """Return the key's primary-key value and its ``full_key`` (``None`` unless hashed).

    :param limit: the most UTF-8 bytes the dialect stores as-is; ``None``: no limit.
    """
    if limit is None or len(key) * 4 <= limit:  # short enough whatever its characters
        return key, None
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return key, None
    prefix = raw[: limit - _HASHED_SUFFIX].decode("utf-8", "ignore")
    return f"{prefix}#{hashlib.sha256(raw).hexdigest()}", key


def namespace_of(key: str) -> str:
    """Return the namespace of a physical key, or ``""`` for other keys."""
    parts = split_physical_key(key)
    if parts is None or len(parts[0]) > NAMESPACE_LIMIT:
        return ""
    return parts[0]


def value_bytes(value: Any) -> bytes:
    """Return a ``value`` column as ``bytes`` (psycopg2 gives ``memoryview``)."""
    return value if type(value) is bytes else bytes(value)


def key_text(key: Any) -> str:
    """Return a ``key`` column as text (MySQL's ``VARBINARY`` gives ``bytes``)."""
    return key.decode("utf-8") if isinstance(key, bytes | bytearray) else str(key)


def entry_row(
    key: str, value: bytes, ttl: float | None, created: float | None, now: float, limit: int | None
) -> dict[str, Any]:
    """Return the column values that store ``value`` under ``key``."""
    stored, full = storage_key(key, limit)
    return {
        "key": stored,
        "full_key": full,
        "namespace": namespace_of(key),
        "value": value,
        "created": now if created is None else created,
        "expires": None if ttl is None else now + ttl,
        "size": len(value),
    }


@dataclass(frozen=True, slots=True)
class Schema:
    """The tables of one tier on one dialect family.

    :param family: ``"sqlite"``, ``"postgresql"`` or ``"mysql"``.
    :param key_limit: the longest key stored as-is, in UTF-8 bytes (``None``: any).
    """

    family: str
    entries: sa.Table
    meta: sa.Table
    locks: sa.Table
    key_limit: int | None

    @property
    def name(self) -> str:
        """The entries table's name."""
        return self.entries.name


def _types(family: str) -> tuple[sa.types.TypeEngine[Any], ...]:
    """Return the key, text and namespace column types of a family."""
    if family == "postgresql":
        # "C" collation: byte order and exact comparison, whatever the database's default
        return sa.Text(collation="C"), sa.Text(collation="C"), sa.Text(collation="C")
    if family == "mysql":
        # VARBINARY: exact (no case folding, no trailing-space padding) and indexable
        return mysql.VARBINARY(KEY_LIMIT), mysql.LONGTEXT(), sa.String(NAMESPACE_LIMIT)
    return sa.Text(), sa.Text(), sa.Text()


def build_schema(name: str, family: str) -> Schema:
    """Describe the tables of a tier named ``name`` on ``family``."""
    metadata = sa.MetaData()
    key_type, text_type, ns_type = _types(family)
    value_type = mysql.LONGBLOB() if family == "mysql" else sa.LargeBinary()
    options: dict[str, Any] = {}
    if family == "mysql":
        options = {
            f"{prefix}_{k}": v for prefix in ("mysql", "mariadb") for k, v in _MYSQL_OPTIONS.items()
        }
    entries = sa.Table(
        name,
        metadata,
        sa.Column("key", key_type, primary_key=True),
        sa.Column("full_key", text_type, nullable=True),
        sa.Column("namespace", ns_type, nullable=False),
        sa.Column("value", value_type, nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("expires", sa.Double(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Index(f"ix_{name}_expires", "expires"),
        sa.Index(f"ix_{name}_ns_created", "namespace", "created"),
        **options,
    )
    meta = sa.Table(
        f"{name}_meta",
        metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
        **options,
    )
    locks = sa.Table(
        f"{name}_locks",
        metadata,
        sa.Column("name", key_type, primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("expires", sa.Double(), nullable=False),
        **options,
    )
    limit = None if family == "sqlite" else KEY_LIMIT
    return Schema(family, entries, meta, locks, limit)


def _lock_id(name: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"llmcache:{name}".encode()).digest()[:8], "big", signed=True
    )


def _mysql_indexes(conn: sa.Connection, table: sa.Table) -> None:
    """Create the indexes MySQL lacks (MySQL has no ``CREATE INDEX IF NOT EXISTS``)."""
    have = {ix["name"] for ix in sa.inspect(conn).get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in have:
            conn.execute(sa.schema.CreateIndex(index))


def _insert_version(schema: Schema) -> sa.Executable:
    meta = schema.meta
    row = {"name": "schema_version", "value": str(SCHEMA_VERSION)}
    if schema.family == "mysql":
        return sa.insert(meta).values(row).prefix_with("IGNORE")
    if schema.family == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(meta).values(row).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(meta).values(row).on_conflict_do_nothing()


def _use_wal(conn: sa.Connection, timeout: float) -> None:
    """Put a SQLite file in WAL mode (a property of the file: once is enough).

    WAL lets readers go on while a process writes. Switching needs the file to itself,
    and SQLite says "database is locked" at once, without waiting, while another process
    uses it (creating the same tables, say): retry until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal":
            return
        try:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            return
        except sa.exc.OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.1)


def ensure_schema(conn: sa.Connection, schema: Schema, timeout: float = 1.0) -> int:
    """Create the tier's tables and indexes if they are missing; return the schema version.

    Runs on a connection in autocommit mode. Safe to run from several processes at once.

    :param timeout: how long SQLite may wait for other processes to let go of the file.

    :raises ConfigError: the tables were made by a newer llmcache (a higher version).
    """
    family = schema.family
    if family == "sqlite":
        _use_wal(conn, timeout)
    elif family == "postgresql":
        # concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalogs
        conn.execute(sa.select(sa.func.pg_advisory_lock(_lock_id(schema.name))))
    else:
        lock = f"llmcache:{schema.name}"
        if not conn.execute(sa.select(sa.func.get_lock(lock, 10))).scalar():
            raise TimeoutError(f"could not take the schema lock {lock!r}")
    try:
        for table in (schema.entries, schema.meta, schema.locks):
            conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
            if family == "mysql":
                _mysql_indexes(conn, table)
            else:
                for index in table.indexes:
                    conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
        conn.execute(_insert_version(schema))
        found = conn.execute(
            sa.select(schema.meta.c.value).where(schema.meta.c.name == "schema_version")
        ).scalar_one()
    finally:
        if family == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_unlock(_lock_id(schema.name))))
        elif family == "mysql":
            conn.execute(sa.select(sa.func.release_lock(f"llmcache:{schema.name}")))
    version = int(found)
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"table {schema.name!r} has llmcache schema version {version}, newer than this "
            f"llmcache's {SCHEMA_VERSION}: upgrade llmcache or use another table= option"
        )
    return version
