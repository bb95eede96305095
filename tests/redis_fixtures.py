"""Real Redis servers for the Redis backend's tests: a standalone server and a 3-master cluster.

Every server is a ``redis-server`` process of the test session, on a free 127.0.0.1 port,
with persistence off, in a temporary directory; all are stopped when the session ends.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import free_port, port_open, require_binary, wait_for_port

__all__ = [
    "RedisCluster",
    "RedisServer",
    "kill_and_restart",
    "private_redis_server",
    "redis_cluster",
    "redis_server",
    "redis_tls_server",
]


def _cli(port: int, *args: str, timeout: float = 10.0) -> str:
    done = subprocess.run(
        [require_binary("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout


@dataclass
class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; :meth:`restart` keeps its port.

    :param extra: arguments added to the command line (cluster mode, for instance).
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    unix_socket: Path | None = None
    tls_port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>``."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            require_binary("redis-server"),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            *self.extra,
        ]
        if self.unix_socket is not None:
            argv += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill the server at once (SIGKILL: no shutdown courtesy, like a crash)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.stop()
        self.start()

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against this server and return its output."""
        return _cli(self.port, *args)


@dataclass
class RedisCluster:
    """Three masters, no replicas, all 16384 slots assigned."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def start_redis_server(workdir: Path) -> RedisServer:
    """Start a standalone server (persistence off) in ``workdir``, also on a Unix socket."""
    server = RedisServer(workdir, unix_socket=workdir / "redis.sock")
    server.start()
    return server


def start_redis_cluster(workdir: Path, ports: Sequence[int] = ()) -> RedisCluster:
    """Start three cluster-enabled servers and join them into a cluster.

    :param ports: the nodes' ports (free ones when not given).
    """
    nodes = []
    try:
        for i in range(3):
            node_dir = workdir / f"node{i}"
            node = RedisServer(
                node_dir,
                **({"port": ports[i]} if ports else {}),
                extra=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout",
                    "5000",
                    # the bus port defaults to port + 10000, which may be taken or past 65535
                    "--cluster-port",
                    str(free_port()),
                ),
            )
            node.start()
            nodes.append(node)
        cluster = RedisCluster(nodes)
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [
                require_binary("redis-cli"),
                *("--cluster", "create", *addresses),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.cli("cluster", "info") for n in nodes):
                return cluster
            time.sleep(0.1)
        raise TimeoutError("the Redis cluster did not reach cluster_state:ok in 30 s")
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def kill_and_restart(server: RedisServer, down_for: float = 0.0) -> None:
    """Kill ``server`` (SIGKILL), wait ``down_for`` seconds, start it again, empty, same port."""
    server.stop()
    time.sleep(down_for)
    server.start()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A standalone ``redis-server`` for the whole session."""
    require_binary("redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-redis-"))
    server = start_redis_server(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start_redis_tls_server(workdir: Path) -> RedisServer:
    """Start a server that also speaks TLS, with a self-signed certificate for 127.0.0.1.

    The certificate (``workdir/cert.pem``) is its own CA; clients need not present one.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            require_binary("openssl"),
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    tls_port = free_port()
    server = RedisServer(
        workdir,
        tls_port=tls_port,
        extra=(
            *("--tls-port", str(tls_port), "--tls-cert-file", str(cert)),
            *("--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)),
            *("--tls-auth-clients", "no"),
        ),
    )
    server.start()
    wait_for_port(tls_port)
    return server


@pytest.fixture(scope="session")
def redis_tls_server() -> Iterator[RedisServer]:
    """A standalone server that also listens for TLS on ``tls_port``."""
    require_binary("redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-redis-tls-"))
    server = start_redis_tls_server(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def private_redis_server() -> Iterator[RedisServer]:
    """A standalone server for one test alone, for tests that kill it."""
    require_binary("redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-redis-"))
    server = start_redis_server(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster for the whole session."""
    require_binary("redis-server")
    require_binary("redis-cli")
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-redis-cluster-"))
    cluster = start_redis_cluster(workdir)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
