"""PostgreSQL servers with and without pgvector, for the semantic tests of the SQL tier.

``pgvector_db``: the machine's PostgreSQL (127.0.0.1:5432, database ``test``) when it has
the ``vector`` extension available; otherwise a throwaway server started from the binaries
the ``pgserver`` wheel ships (PostgreSQL 16 with pgvector; ``scripts/test`` installs it),
copied into a temporary directory with their libraries so that the unprivileged user
PostgreSQL must run as (``postgres``, or ``nobody``, when the tests run as root) can read
them, on a free loopback port.

``plain_postgres_db``: a server without the extension: the machine's (or the throwaway one
of :func:`tests.sql_fixtures.postgres_db`) when it lacks it, else the same ``pgserver``
binaries with pgvector's files left out of the copy.

Set ``LLMCACHE_SQL_THROWAWAY=1`` to use throwaway servers even when the machine's answer.
When neither works the test is reported unavailable (a failure in CI).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.servers import free_port, unavailable, wait_for_port
from tests.sql_fixtures import FORCE_THROWAWAY, MACHINE_POSTGRES, Database, drop_tables

__all__ = ["drop_vector_tables", "pgserver_postgres", "pgvector_db", "plain_postgres_db"]


def _has_vector(url: str) -> bool | None:
    """Whether the server at ``url`` offers the extension; ``None`` when it does not answer."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).first()
        return found is not None
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def drop_vector_tables(url: str, table: str) -> None:
    """Drop a tier's vector tables, then its own tables."""
    engine = sa.create_engine(url.split("?", 1)[0])
    try:
        with engine.begin() as conn:
            names = conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE %(pattern)s",
                {"pattern": f"{table}\\_v%"},
            ).scalars()
            for name in list(names):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    finally:
        engine.dispose()
    drop_tables(url, table)


def _runner() -> list[str]:
    """The prefix that runs a command as an unprivileged user, when the tests run as root."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    unavailable("an unprivileged user to run PostgreSQL as (no 'postgres', no 'nobody')")


def _copy_pgserver(workdir: Path, with_vector: bool) -> Path:
    """Copy pgserver's PostgreSQL into ``workdir``; return its ``bin`` directory."""
    spec = importlib.util.find_spec("pgserver")  # located, not imported (it sets up paths)
    if spec is None or not spec.submodule_search_locations:
        unavailable("PostgreSQL with pgvector (pip install pgserver; scripts/test does)")
    package = Path(next(iter(spec.submodule_search_locations)))
    site = workdir / "site"
    # the binaries find their libraries at $ORIGIN/../../../pgserver.libs: keep the layout
    skip = None if with_vector else shutil.ignore_patterns("vector*")
    shutil.copytree(package / "pginstall", site / "pgserver" / "pginstall", ignore=skip)
    libs = package.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / "pgserver.libs")
    return site / "pgserver" / "pginstall" / "bin"


def _start(workdir: Path, with_vector: bool) -> Database:
    runner = _runner()
    binaries = _copy_pgserver(workdir, with_vector)
    if runner:
        subprocess.run(["chown", "-R", runner[2], str(workdir)], check=True, timeout=60)
    data, port = workdir / "data", free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        [*runner, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
         "-E", "UTF8"],
        **run,
    )  # fmt: skip
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = workdir / "postgres.log"
    pg_ctl = str(binaries / "pg_ctl")
    subprocess.run(
        [*runner, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"], **run
    )
    wait_for_port(port)
    admin = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE test")
    admin.dispose()
    stop = " ".join([*runner, pg_ctl, "-D", str(data), "-m", "fast", "stop"])
    return Database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", "postgresql", [stop])


@contextlib.contextmanager
def pgserver_postgres(with_vector: bool) -> Iterator[Database]:
    """Start a throwaway server from pgserver's binaries (with or without pgvector)."""
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-pgvector-"))
    os.chmod(workdir, 0o755)
    database = None
    try:
        try:
            database = _start(workdir, with_vector)
        except (OSError, subprocess.SubprocessError, sa.exc.SQLAlchemyError) as exc:
            what = "PostgreSQL with pgvector" if with_vector else "PostgreSQL"
            unavailable(f"{what} (a throwaway server from pgserver's binaries failed: {exc})")
        yield database
    finally:
        for stopper in database.stop if database is not None else ():
            assert isinstance(stopper, str)
            subprocess.run(stopper.split(), capture_output=True, timeout=60, check=False)
        time.sleep(0.1)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector_db() -> Iterator[Database]:
    """A PostgreSQL database whose server has the ``vector`` extension."""
    if not FORCE_THROWAWAY and _has_vector(MACHINE_POSTGRES):
        yield Database(MACHINE_POSTGRES, "postgresql")
        return
    with pgserver_postgres(with_vector=True) as database:
        yield database


@pytest.fixture(scope="session")
def plain_postgres_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A PostgreSQL database whose server lacks the ``vector`` extension."""
    database: Database = request.getfixturevalue("postgres_db")
    if _has_vector(database.url) is False:
        yield database
        return
    with pgserver_postgres(with_vector=False) as plain:
        yield plain
