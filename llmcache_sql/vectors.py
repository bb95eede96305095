"""Semantic vectors searched in PostgreSQL with pgvector, beside a tier's entries.

A semantic cache stores each question's vector as a record beside its answer (see
:mod:`llmcache.semantic.matcher`). On a PostgreSQL tier whose server has the ``vector``
extension (installed, or installable by ``CREATE EXTENSION IF NOT EXISTS vector``), the
tier also keeps each vector in a table of its own, and the nearest-neighbour search runs in
the server, so no process ever pulls a partition's vectors in; the same statement returns
the nearest records themselves, so a lookup is one round trip:

``<table>_v<dim>``
    ``key`` (primary key, a foreign key to the entries table's ``key`` with ``ON DELETE
    CASCADE``), ``full_key``, ``space`` (the partition, as the semantic layer names it),
    ``expires`` (copied from the entry) and ``embedding vector(<dim>)``; indexed on
    ``space`` and, up to 2,000 dimensions (pgvector's limit), with HNSW on the cosine
    distance.

The foreign key ties each vector to its record: whatever deletes the record (a clear by
glob or age, a delete, the purge of expired entries) deletes the vector in the same
statement, and a vector is only ever written for a record that is in the table. Expired
vectors not yet purged are never returned (the search filters on ``expires``).

Nothing here is used on SQLite or MySQL/MariaDB, nor on a PostgreSQL server without the
extension: the tier then says so once in the log and the semantic layer searches
in-process as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import Dialect

from .schema import Schema, _lock_id
from .statements import Prepared

__all__ = ["HNSW_MAX_DIM", "VectorStatements", "ensure_vectors", "vector_literal"]

log = logging.getLogger("llmcache.sql")

HNSW_MAX_DIM = 2000  # pgvector indexes vectors of up to 2,000 dimensions


def vector_literal(vector: Sequence[float]) -> str:
    """Return pgvector's text form of ``vector`` (``[0.1,0.2,...]``)."""
    return "[" + ",".join([f"{x:.9g}" for x in vector]) + "]"  # float32 round-trips in 9


def table_name(schema: Schema, dim: int) -> str:
    """Return the name of the table holding a tier's vectors of ``dim`` dimensions."""
    return f"{schema.name}_v{dim}"


class VectorStatements:
    """The statements of one vector table, compiled for one dialect.

    :param schema: the tier's tables.
    :param dim: the vectors' size.
    :param dialect: the engine's dialect.
    """

    def __init__(self, schema: Schema, dim: int, dialect: Dialect) -> None:
        self.dim = dim
        table = table_name(schema, dim)
        entries = schema.name
        cast = f"CAST(CAST(:q AS TEXT) AS vector({dim}))"
        self.put = Prepared(
            sa.text(
                f"INSERT INTO {table} (key, full_key, space, expires, embedding) "
                f"SELECT e.key, e.full_key, :space, e.expires, {cast} FROM {entries} e "
                "WHERE e.key = :key "
                "ON CONFLICT (key) DO UPDATE SET full_key = EXCLUDED.full_key, "
                "space = EXCLUDED.space, expires = EXCLUDED.expires, "
                "embedding = EXCLUDED.embedding"
            ),
            dialect,
        )
        # the nearest vectors through the index, then their live records in the same trip
        self.search = Prepared(
            sa.text(
                "SELECT COALESCE(v.full_key, v.key), v.distance, e.value FROM ("
                f"SELECT key, full_key, embedding <=> {cast} AS distance FROM {table} "
                "WHERE space = :space AND (expires IS NULL OR expires > :now) "
                "ORDER BY distance LIMIT :k"
                f") v JOIN {entries} e ON e.key = v.key "
                "WHERE v.distance <= :far AND (e.expires IS NULL OR e.expires > :now) "
                "ORDER BY v.distance"
            ),
            dialect,
        )

    def put_args(self, key: str, space: str, vector: Sequence[float]) -> Any:
        """Return the driver's arguments for :attr:`put`."""
        return self.put.args({"key": key, "space": space, "q": vector_literal(vector)})

    def search_args(self, space: str, vector: Sequence[float], k: int, floor: float) -> Any:
        """Return the driver's arguments for :attr:`search`."""
        args = {
            "space": space,
            "q": vector_literal(vector),
            "now": time.time(),
            "k": k,
            "far": 1.0 - floor,
        }
        return self.search.args(args)


def _ddl(schema: Schema, dim: int) -> list[str]:
    table = table_name(schema, dim)
    ddl = [
        f"CREATE TABLE IF NOT EXISTS {table} ("
        f'key TEXT COLLATE "C" PRIMARY KEY REFERENCES {schema.name} (key) ON DELETE CASCADE, '
        'full_key TEXT COLLATE "C", space TEXT COLLATE "C" NOT NULL, '
        f"expires DOUBLE PRECISION, embedding vector({dim}) NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS ix_{table}_space ON {table} (space)",
    ]
    if dim <= HNSW_MAX_DIM:
        ddl.append(
            f"CREATE INDEX IF NOT EXISTS ix_{table}_hnsw ON {table} "
            "USING hnsw (embedding vector_cosine_ops)"
        )
    return ddl


def _has_extension(conn: sa.Connection) -> bool:
    found = conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    return found.first() is not None


def ensure_vectors(conn: sa.Connection, schema: Schema, dim: int) -> str | None:
    """Make the vector table of ``dim`` dimensions; return why it cannot be, or ``None``.

    Runs on a connection in autocommit mode, after the tier's own tables exist. Creates
    the extension where it is available and the role may (``CREATE EXTENSION IF NOT
    EXISTS vector``), under the tier's advisory lock, as the tier's tables are created.
    """
    if schema.family != "postgresql":
        return f"pgvector is a PostgreSQL extension, and this tier is {schema.family}"
    lock = _lock_id(schema.name)
    conn.execute(sa.select(sa.func.pg_advisory_lock(lock)))
    try:
        if not _has_extension(conn):
            available = conn.exec_driver_sql(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).first()
            if available is None:
                return "the server has no 'vector' extension"
            try:
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            except sa.exc.DBAPIError as exc:
                # another tier's process may have created it at the same moment
                if not _has_extension(conn):
                    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                    return f"CREATE EXTENSION vector failed: {reason}"
        for statement in _ddl(schema, dim):
            conn.exec_driver_sql(statement)
    finally:
        conn.execute(sa.select(sa.func.pg_advisory_unlock(lock)))
    return None


def not_found(backend: Any, reason: str) -> None:
    """Say once, for a tier, that its semantic vectors are searched in-process."""
    log.warning(
        "llmcache: pgvector was not found for %r (%s); semantic vectors are searched in-process",
        backend,
        reason,
    )
