"""The servers a benchmark run starts for itself, on free loopback ports, pinned to one core.

Every server is a child process of the run (redis-server, a 3-master Redis Cluster,
memcached) with persistence off, in a temporary directory, stopped when the run ends.
PostgreSQL is the machine's own server when one answers on 127.0.0.1:5432 (database
``test``, trust auth); the run uses tables of its own there and drops them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "POSTGRES_URL",
    "Memcached",
    "Redis",
    "RedisCluster",
    "Servers",
    "free_port",
    "pinned",
    "postgres_available",
]

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """Prefix ``argv`` with ``taskset`` so the process runs on ``cpu`` only (when possible)."""
    taskset = shutil.which("taskset")
    if cpu is None or taskset is None:
        return list(argv)
    return [taskset, "-c", str(cpu), *argv]


def binary(name: str) -> str | None:
    """Return the path of a server binary, or ``None``."""
    return shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None
    )


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)


@dataclass
class Redis:
    """One ``redis-server`` on 127.0.0.1 (persistence off)."""

    workdir: Path
    cpu: int | None
    extra: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        """Start the server and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary("redis-server") or "redis-server",
            *("--bind", "127.0.0.1", "--port", str(self.port)),
            *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            *self.extra,
        ]
        self.process = subprocess.Popen(
            pinned(argv, self.cpu), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against this server; return its output."""
        done = subprocess.run(
            [binary("redis-cli") or "redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout

    def stop(self) -> None:
        """Kill the server."""
        _stop(self.process)
        self.process = None


@dataclass
class RedisCluster:
    """Three masters, no replicas, all 16384 slots assigned."""

    nodes: list[Redis]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @classmethod
    def start(cls, workdir: Path, cpu: int | None) -> RedisCluster:
        """Start three cluster-enabled servers and join them."""
        nodes: list[Redis] = []
        try:
            for i in range(3):
                node_dir = workdir / f"node{i}"
                extra = (
                    *("--cluster-enabled", "yes"),
                    *("--cluster-config-file", str(node_dir / "nodes.conf")),
                    *("--cluster-node-timeout", "5000", "--cluster-port", str(free_port())),
                )
                nodes.append(Redis(node_dir, cpu, extra).start())
            addresses = [f"127.0.0.1:{n.port}" for n in nodes]
            subprocess.run(
                [
                    binary("redis-cli") or "redis-cli",
                    *("--cluster", "create", *addresses, "--cluster-replicas", "0"),
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=60,
                check=True,
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if all("cluster_state:ok" in n.cli("cluster", "info") for n in nodes):
                    return cls(nodes)
                time.sleep(0.1)
            raise TimeoutError("the Redis cluster did not reach cluster_state:ok in 30 s")
        except BaseException:
            for node in nodes:
                node.stop()
            raise

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


@dataclass
class Memcached:
    """One ``memcached`` on 127.0.0.1 (TCP only)."""

    cpu: int | None
    megabytes: int = 64
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``memcached://127.0.0.1:<port>``."""
        return f"memcached://127.0.0.1:{self.port}"

    def start(self) -> Memcached:
        """Start the server and wait until it accepts connections."""
        argv = [binary("memcached") or "/usr/bin/memcached", "-l", "127.0.0.1"]
        argv += ["-p", str(self.port), "-U", "0", "-m", str(self.megabytes), "-c", "1024"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # memcached refuses to run as root without -u
        self.process = subprocess.Popen(
            pinned(argv, self.cpu), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        """Kill the server."""
        _stop(self.process)
        self.process = None


def postgres_available() -> bool:
    """Tell whether the machine's PostgreSQL answers at 127.0.0.1:5432, database ``test``."""
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def postgres_version() -> str:
    """Return the server's ``server_version``."""
    import psycopg

    with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def drop_tables(table: str) -> None:
    """Drop the tables a SQL tier named ``table`` created in the machine's PostgreSQL."""
    import psycopg

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        for name in (table, f"{table}_meta", f"{table}_locks"):
            conn.execute(f"DROP TABLE IF EXISTS {name}")


class Servers:
    """Start servers on demand; stop them all on :meth:`close` (or at the ``with`` exit).

    :param cpu: the core servers run on (``None``: anywhere).
    """

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.workdir = Path(tempfile.mkdtemp(prefix="llmcache-bench-"))
        self._stoppers: list[Redis | RedisCluster | Memcached] = []
        self.pg_tables: list[str] = []

    def redis(self) -> Redis:
        """Start a standalone Redis."""
        server = Redis(self.workdir / f"redis-{len(self._stoppers)}", self.cpu).start()
        self._stoppers.append(server)
        return server

    def redis_cluster(self) -> RedisCluster:
        """Start a 3-master Redis Cluster."""
        cluster = RedisCluster.start(self.workdir / f"cluster-{len(self._stoppers)}", self.cpu)
        self._stoppers.append(cluster)
        return cluster

    def memcached(self, megabytes: int = 64) -> Memcached:
        """Start a memcached with ``megabytes`` of memory."""
        server = Memcached(self.cpu, megabytes).start()
        self._stoppers.append(server)
        return server

    def stop(self, server: Redis | RedisCluster | Memcached) -> None:
        """Stop one server now (freeing its memory)."""
        server.stop()
        with contextlib.suppress(ValueError):
            self._stoppers.remove(server)

    def postgres_table(self, prefix: str) -> str:
        """Return a fresh table name in the machine's PostgreSQL, dropped at :meth:`close`."""
        table = f"{prefix}_{os.getpid()}_{len(self.pg_tables)}"
        self.pg_tables.append(table)
        return table

    def sqlite_path(self, name: str) -> Path:
        """Return a path for an SQLite file in the run's temporary directory."""
        return self.workdir / f"{name}.db"

    def close(self) -> None:
        """Stop every server, drop the PostgreSQL tables, remove the temporary directory."""
        for server in reversed(self._stoppers):
            server.stop()
        self._stoppers.clear()
        for table in self.pg_tables:
            with contextlib.suppress(Exception):
                drop_tables(table)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def started(servers: Servers, server: Redis | RedisCluster | Memcached) -> Iterator[None]:
    """Stop ``server`` when the block ends."""
    try:
        yield
    finally:
        servers.stop(server)
