"""Real databases for the SQL backend's tests: SQLite files, PostgreSQL and MariaDB servers.

PostgreSQL and MariaDB are the machine's own servers when they answer (127.0.0.1:5432,
trust auth, database ``test``; 127.0.0.1:3306, user root without a password, database
``test``); otherwise a throwaway server is started in a temporary directory on a free port
(``initdb``/``pg_ctl``, ``mariadb-install-db``/``mariadbd``) and stopped at the end of the
session. Set ``LLMCACHE_SQL_THROWAWAY=1`` to use throwaway servers even when the machine's
answer. Only when neither works is the test reported unavailable (a failure in CI).

Every test class gets tables of its own (``?table=t_<random>``), dropped afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.servers import free_port, port_open, unavailable, wait_for_port

__all__ = [
    "Database",
    "drop_tables",
    "mariadb_db",
    "postgres_db",
    "table_url",
]

FORCE_THROWAWAY = os.environ.get("LLMCACHE_SQL_THROWAWAY", "") in ("1", "true", "yes")
MACHINE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MACHINE_MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"


@dataclass
class Database:
    """A database server the tests may use, and how to stop it if the tests started it."""

    url: str
    name: str
    stop: list[subprocess.Popen[bytes] | str] = field(default_factory=list)

    def table_url(self, table: str) -> str:
        """The tier URL of this database with ``table=`` set."""
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}table={table}"


def table_url(database: Database) -> tuple[str, str]:
    """Return a fresh table name and the tier URL that uses it."""
    table = "t_" + uuid.uuid4().hex[:12]
    return table, database.table_url(table)


def drop_tables(url: str, table: str) -> None:
    """Drop the tables a tier named ``table`` created."""
    engine = sa.create_engine(url.split("?", 1)[0])
    try:
        with engine.begin() as conn:
            for name in (table, f"{table}_meta", f"{table}_locks"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    finally:
        engine.dispose()


def _answers(url: str) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def _run(args: list[str], *, user: str | None = None, cwd: str | None = None) -> None:
    if user is not None and os.geteuid() == 0:
        args = ["runuser", "-u", user, "--", *args]
    subprocess.run(args, check=True, capture_output=True, timeout=120, cwd=cwd)


def _postgres_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return found[0] if found else shutil.which(name)


def _throwaway_postgres(workdir: Path) -> Database:
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        unavailable("PostgreSQL (no server on 127.0.0.1:5432 and no initdb/pg_ctl)")
    user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    if user is not None:
        shutil.chown(workdir, user)
    data, port = workdir / "data", free_port()
    _run([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"], user=user)
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = workdir / "postgres.log"
    _run([pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"], user=user)
    wait_for_port(port)
    admin = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE test")
    admin.dispose()
    stop = " ".join(
        [
            *(["runuser", "-u", user, "--"] if user else []),
            pg_ctl,
            "-D",
            str(data),
            "-m",
            "fast",
            "stop",
        ]
    )
    return Database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", "postgresql", [stop])


def _throwaway_mariadb(workdir: Path) -> Database:
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    server = shutil.which("mariadbd") or next(
        (p for p in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld") if os.path.exists(p)), None
    )
    if install is None or server is None:
        unavailable("MariaDB (no server on 127.0.0.1:3306 and no mariadb-install-db/mariadbd)")
    data, port = workdir / "data", free_port()
    user = ["--user=root"] if os.geteuid() == 0 else []
    _run(
        [
            install,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *user,
        ]
    )
    process = subprocess.Popen(
        [
            server,
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={workdir / 'mariadb.sock'}",
            f"--pid-file={workdir / 'mariadb.pid'}",
            "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=2",
            *user,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60)
        admin = sa.create_engine(f"mysql+pymysql://root@127.0.0.1:{port}/mysql")
        with admin.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE IF NOT EXISTS test")
        admin.dispose()
    except BaseException:
        process.terminate()
        process.wait(30)
        raise
    return Database(f"mysql+pymysql://root@127.0.0.1:{port}/test", "mariadb", [process])


@contextlib.contextmanager
def _server(
    machine_url: str, port: int, start: Callable[[Path], Database], what: str
) -> Iterator[Database]:
    name = "postgresql" if machine_url.startswith("postgresql") else "mariadb"
    if not FORCE_THROWAWAY and port_open(port) and _answers(machine_url):
        yield Database(machine_url, name)
        return
    workdir = Path(tempfile.mkdtemp(prefix=f"llmcache-{name}-"))
    os.chmod(workdir, 0o755)
    database = None
    try:
        try:
            database = start(workdir)
        except (OSError, subprocess.SubprocessError, sa.exc.SQLAlchemyError) as exc:
            unavailable(f"{what} (no server answers and a throwaway one failed: {exc})")
        yield database
    finally:
        for stopper in database.stop if database is not None else ():
            if isinstance(stopper, str):
                subprocess.run(stopper.split(), capture_output=True, timeout=60, check=False)
            else:
                stopper.terminate()
                try:
                    stopper.wait(30)
                except subprocess.TimeoutExpired:
                    stopper.kill()
        time.sleep(0.1)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[Database]:
    """A PostgreSQL database: the machine's, or a throwaway server's."""
    with _server(MACHINE_POSTGRES, 5432, _throwaway_postgres, "PostgreSQL") as database:
        yield database


@pytest.fixture(scope="session")
def mariadb_db() -> Iterator[Database]:
    """A MariaDB database: the machine's, or a throwaway server's."""
    with _server(MACHINE_MARIADB, 3306, _throwaway_mariadb, "MariaDB") as database:
        yield database
