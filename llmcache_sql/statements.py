"""The SQL a tier runs, built with SQLAlchemy Core and compiled once per dialect.

The hot statements (one-key read, upsert, multi-key read and delete) are compiled to the
driver's own SQL string when the tier is first used and then run straight on the DBAPI
cursor (sync) or through ``exec_driver_sql`` (async): SQLAlchemy does the dialect work
(quoting, upserts, placeholders) once, and a cache hit pays for one indexed primary-key
``SELECT`` and nothing else. Statements whose shape depends on the call (``clear``,
``scan``) are compiled per call; they are not on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from llmcache.backends import KEY_PREFIX, globs

from .schema import NAMESPACE_LIMIT, Schema, storage_key

__all__ = [
    "LIKE_ESCAPE",
    "MANY_CHUNK",
    "ClearBatches",
    "Prepared",
    "Statements",
    "is_literal",
    "padded",
    "pattern_namespace",
    "to_glob",
]

T = TypeVar("T")

LIKE_ESCAPE = "!"  # not a backslash: MySQL treats backslashes specially in strings
MANY_CHUNK = 256  # keys per multi-key statement


class Prepared:
    """A statement compiled for one dialect: its SQL and how to lay out its parameters.

    :ivar sql: the driver's SQL string.
    """

    __slots__ = ("_defaults", "_names", "sql")

    def __init__(self, statement: sa.ClauseElement | sa.Executable, dialect: Dialect) -> None:
        clause = cast(sa.ClauseElement, statement)
        compiled = cast(
            SQLCompiler,
            clause.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}),
        )
        self.sql: str = compiled.string
        self._names = tuple(compiled.positiontup or ()) if compiled.positional else None
        self._defaults = {k: v for k, v in compiled.params.items() if v is not None}

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """Return ``values`` (with the statement's own bound values) as the driver wants them."""
        merged = {**self._defaults, **values} if self._defaults else values
        if self._names is None:
            return dict(merged)
        return tuple(merged[name] for name in self._names)

    def binder(self, *names: str) -> Callable[..., tuple[Any, ...] | dict[str, Any]]:
        """Return a fast ``f(*values)`` for a statement whose parameters are ``names``."""
        if self._names == names and not self._defaults:
            return lambda *values: values
        return lambda *values: self.args(dict(zip(names, values, strict=True)))


def to_glob(pattern: str) -> str:
    """Translate an llmcache glob into SQLite's case-sensitive ``GLOB`` syntax."""
    out = []
    for kind, c in globs.tokens(pattern):
        if kind == "star":
            out.append("*")
        elif kind == "one":
            out.append("?")
        else:
            out.append(f"[{c}]" if c in "*?[" else c)
    return "".join(out)


def pattern_namespace(pattern: str) -> str | None:
    """Return the namespace every key matching ``pattern`` is in, or ``None`` if not fixed.

    ``llmcache:ns:*`` → ``"ns"``: a clear can then use the ``(namespace, created)`` index.
    """
    literal = []
    for kind, c in globs.tokens(pattern):
        if kind != "lit":
            break
        literal.append(c)
    head = "".join(literal)
    prefix = KEY_PREFIX + ":"
    if not head.startswith(prefix):
        return None
    namespace, sep, _ = head[len(prefix) :].partition(":")
    if not sep or len(namespace) > NAMESPACE_LIMIT:
        return None
    return namespace


def is_literal(pattern: str) -> bool:
    """Return whether ``pattern`` has no wildcards (it names one key)."""
    return all(kind == "lit" for kind, _ in globs.tokens(pattern))


def _literal(pattern: str) -> str:
    return "".join(c for _, c in globs.tokens(pattern))


class Statements:
    """Every statement of one tier, for one dialect.

    :param schema: the tier's tables.
    :param dialect: the engine's dialect, initialised (connected once), so that
        version-dependent syntax (MySQL's upsert) is right for the server.
    :param purge_batch: the most expired rows one purge deletes.
    """

    def __init__(self, schema: Schema, dialect: Dialect, purge_batch: int) -> None:
        self.schema = schema
        self.purge_batch = purge_batch
        self.dialect = dialect
        self.family = schema.family
        t = schema.entries
        fresh = sa.or_(t.c.expires.is_(None), t.c.expires > sa.bindparam("now"))
        short = [t.c.full_key.is_(None)] if schema.key_limit is not None else []
        self.get = self.prepare(
            sa.select(t.c.value).where(t.c.key == sa.bindparam("key"), *short, fresh)
        )
        self.get_long = self.prepare(
            sa.select(t.c.value).where(
                t.c.key == sa.bindparam("key"), t.c.full_key == sa.bindparam("full_key"), fresh
            )
        )
        self.get_args = self.get.binder("key", "now")
        self.get_long_args = self.get_long.binder("key", "full_key", "now")
        self.upsert = self.prepare(self._upsert())
        self.purge = self.prepare(self._purge(t, t.c.key, t.c.expires))
        locks = schema.locks
        self.purge_locks = self.prepare(self._purge(locks, locks.c.name, locks.c.expires))
        self.take_lock = self.prepare(self._take_lock())
        self.lock_token = self.prepare(
            sa.select(locks.c.token).where(locks.c.name == sa.bindparam("name"))
        )
        self.unlock = self.prepare(
            sa.delete(locks).where(
                locks.c.name == sa.bindparam("name"), locks.c.token == sa.bindparam("token")
            )
        )
        self._fresh = fresh
        self._many: dict[tuple[str, int], Prepared] = {}

    def prepare(self, statement: sa.ClauseElement | sa.Executable) -> Prepared:
        """Compile ``statement`` for this dialect."""
        return Prepared(statement, self.dialect)

    # -- upserts -------------------------------------------------------------------------

    def _upsert(self) -> sa.Executable:
        t = self.schema.entries
        columns = ("full_key", "namespace", "value", "created", "expires", "size")
        values: dict[str, Any] = {
            "key": sa.bindparam("key"),
            **{c: sa.bindparam(c) for c in columns},
        }
        if self.family == "mysql":
            mysql_insert = mysql.insert(t).values(values)
            inserted = mysql_insert.inserted
            return mysql_insert.on_duplicate_key_update({c: inserted[c] for c in columns})
        insert = self._insert(t).values(values)
        return cast(
            sa.Executable,
            insert.on_conflict_do_update(
                index_elements=[t.c.key], set_={c: insert.excluded[c] for c in columns}
            ),
        )

    def _insert(self, table: sa.Table) -> Any:
        """Return the dialect's ``INSERT`` with ``ON CONFLICT`` (PostgreSQL, SQLite)."""
        if self.family == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _take_lock(self) -> sa.Executable:
        """Insert a lock row, or take over one that has expired."""
        locks = self.schema.locks
        values: dict[str, Any] = {
            "name": sa.bindparam("name"),
            "token": sa.bindparam("token"),
            "expires": sa.bindparam("expires"),
        }
        expired = locks.c.expires <= sa.bindparam("now")
        if self.family == "mysql":
            mysql_insert = mysql.insert(locks).values(values)
            new = mysql_insert.inserted
            # MySQL assigns left to right: token must be decided before expires changes
            return mysql_insert.on_duplicate_key_update(
                [
                    ("token", sa.case((expired, new.token), else_=locks.c.token)),
                    ("expires", sa.case((expired, new.expires), else_=locks.c.expires)),
                ]
            )
        insert = self._insert(locks).values(values)
        return cast(
            sa.Executable,
            insert.on_conflict_do_update(
                index_elements=[locks.c.name],
                set_={"token": insert.excluded.token, "expires": insert.excluded.expires},
                where=expired,
            ),
        )

    def _purge(
        self, table: sa.Table, key: sa.ColumnElement[Any], expires: sa.ColumnElement[Any]
    ) -> sa.Executable:
        """Delete at most ``purge_batch`` expired rows, found through the ``expires`` index."""
        done = expires <= sa.bindparam("now")
        limit = max(1, self.purge_batch)
        if self.family == "mysql":  # no LIMIT in IN subqueries; DELETE ... LIMIT instead
            return sa.delete(table).where(done).with_dialect_options(mysql_limit=limit)
        doomed = sa.select(key).where(done).limit(limit).scalar_subquery()
        return sa.delete(table).where(key.in_(doomed))

    # -- multi-key statements --------------------------------------------------------------

    def many(self, kind: str, count: int) -> tuple[Prepared, int]:
        """Return the ``"get"`` or ``"delete"`` statement for ``count`` keys and its width.

        Widths are powers of two (the caller pads with repeated keys), so that a handful
        of compiled statements serve every batch size.
        """
        width = 1
        while width < count:
            width *= 2
        found = self._many.get((kind, width))
        if found is None:
            t = self.schema.entries
            keys = t.c.key.in_([sa.bindparam(f"k{i}") for i in range(width)])
            statement: sa.Executable
            if kind == "get":
                statement = sa.select(t.c.key, t.c.full_key, t.c.value).where(keys, self._fresh)
            else:
                statement = sa.delete(t).where(keys)
            found = self._many[kind, width] = self.prepare(statement)
        return found, width

    # -- clear and scan ------------------------------------------------------------------

    def matches(self, pattern: str) -> sa.ColumnElement[bool]:
        """Return the condition "the row's full key matches the glob ``pattern``"."""
        t = self.schema.entries
        if is_literal(pattern):
            key, full = storage_key(_literal(pattern), self.schema.key_limit)
            exact = t.c.full_key.is_(None) if full is None else t.c.full_key == full
            return sa.and_(t.c.key == key, exact)
        if self.family == "sqlite":  # LIKE is case-insensitive there; GLOB is exact
            return t.c.key.op("GLOB")(to_glob(pattern))
        like = globs.to_like(pattern, escape_char=LIKE_ESCAPE)
        full_key: sa.ColumnElement[Any] = sa.func.coalesce(t.c.full_key, t.c.key)
        if self.family == "mysql":  # keys are bytes there: compare as exact UTF-8 text
            text = sa.cast(t.c.key, mysql.CHAR(charset="utf8mb4"))
            full_key = sa.collate(sa.func.coalesce(t.c.full_key, text), "utf8mb4_bin")
        return full_key.like(like, escape=LIKE_ESCAPE)

    def where(
        self,
        pattern: str | None,
        older_than: float | None,
        now: float,
        *,
        by_namespace: bool = True,
    ) -> list[sa.ColumnElement[bool]]:
        """Return the conditions of ``clear(pattern, older_than)``.

        :param by_namespace: add ``namespace = <the pattern's>`` when the pattern fixes it.
            The glob decides on its own; this condition is there to let the
            ``(namespace, created)`` index find the rows.
        """
        t = self.schema.entries
        conditions: list[sa.ColumnElement[bool]] = []
        if pattern is not None:
            namespace = pattern_namespace(pattern) if by_namespace else None
            if namespace is not None:
                conditions.append(t.c.namespace == namespace)
            if pattern != "*":
                conditions.append(self.matches(pattern))
        if older_than is not None:
            conditions.append(t.c.created <= now - older_than)
        return conditions

    def clear(self, pattern: str | None, older_than: float | None, now: float) -> Prepared:
        """Return the ``DELETE`` of ``clear(pattern, older_than)`` (one statement)."""
        return self.prepare(
            sa.delete(self.schema.entries).where(*self.where(pattern, older_than, now))
        )

    def clear_batches(
        self, pattern: str | None, older_than: float | None, now: float, batch: int
    ) -> ClearBatches:
        """Return the statements of ``clear(pattern, older_than)`` in batches (SQLite).

        A page is a read: the next ``batch`` rows to remove, in the order of an index, after
        the last row of the previous page (by ``(created, rowid)`` on the namespace's
        index when the pattern fixes the namespace, else by ``rowid``); it takes no lock.
        The ``DELETE`` then removes those rows by ``rowid``, checking the conditions again
        (a row may have changed since it was read): the write lock is held for ``batch``
        rows at most, never for a scan.
        """
        t = self.schema.entries
        rowid = sa.literal_column("rowid", sa.Integer)
        by_created = pattern is not None and pattern_namespace(pattern) is not None
        order = [t.c.created, rowid] if by_created else [rowid]
        names = ("after_created", "after_rowid")[-len(order) :]
        after: list[sa.BindParameter[Any]] = [sa.bindparam(name) for name in names]
        select = (
            sa.select(*order)
            .select_from(t)
            .where(*self.where(pattern, older_than, now))
            .order_by(*order)
            .limit(batch)
        )
        later = sa.tuple_(*order) > sa.tuple_(*after) if by_created else rowid > after[0]
        ids: list[sa.BindParameter[Any]] = [sa.bindparam(f"k{i}") for i in range(batch)]
        # without the namespace condition, which would let SQLite pick the namespace's
        # index (a scan under the write lock) over the rowids
        again = self.where(pattern, older_than, now, by_namespace=False)
        return ClearBatches(
            first=self.prepare(select),
            next=self.prepare(select.where(later)),
            delete=self.prepare(sa.delete(t).where(rowid.in_(ids), *again)),
            after=names,
            batch=batch,
        )

    def scan(self, pattern: str | None, now: float, after: str | None, limit: int) -> Prepared:
        """Return one page of live rows matching ``pattern``, in key order after ``after``."""
        t = self.schema.entries
        conditions = self.where(pattern, None, now)
        conditions.append(sa.or_(t.c.expires.is_(None), t.c.expires > now))
        if after is not None:
            conditions.append(t.c.key > after)
        return self.prepare(
            sa.select(t.c.key, t.c.full_key, t.c.size, t.c.created, t.c.expires)
            .where(*conditions)
            .order_by(t.c.key)
            .limit(limit)
        )


class ClearBatches(NamedTuple):
    """A clear in batches (see :meth:`Statements.clear_batches`).

    :ivar first: the first page: the first ``batch`` rows to remove, each as its values of
        the order's columns.
    :ivar next: the next page, after the values ``after`` names (the previous page's last row).
    :ivar delete: the ``DELETE`` of one page's rows by ``rowid`` (``k0``…, padded to ``batch``).
    """

    first: Prepared
    next: Prepared
    delete: Prepared
    after: tuple[str, ...]
    batch: int


def padded(keys: Sequence[T], width: int) -> dict[str, T]:
    """Return ``k0``…``k<width-1>`` bound to ``keys``, the last one repeated as padding."""
    return {f"k{i}": keys[min(i, len(keys) - 1)] for i in range(width)}
