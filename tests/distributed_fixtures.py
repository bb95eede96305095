"""Real replicated Redis deployments for the distributed-fault tests.

- :func:`start_replicated_cluster`: a Redis Cluster of 3 masters and 3 replicas with
  ``cluster-node-timeout 1000``, so that a killed master's replica is promoted within
  about a second and a half.
- :func:`start_sentinel_group`: a primary, one replica and three sentinels watching them
  under the service name ``mymaster``.

Every process is a ``redis-server`` (``--sentinel`` for sentinels) on a free 127.0.0.1
port, with its own temporary directory and persistence off. The benchmarks script
(``benchmarks/distributed.py``) starts the same deployments, so both import from here.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.redis_fixtures import RedisServer, _cli
from tests.servers import free_port, require_binary, wait_for_port

__all__ = [
    "NODE_TIMEOUT_MS",
    "ReplicatedCluster",
    "SentinelGroup",
    "replicated_cluster",
    "reshard",
    "sentinel_group",
    "start_replicated_cluster",
    "start_sentinel_group",
]

#: ``cluster-node-timeout``: how long a master may be silent before its replica takes over.
NODE_TIMEOUT_MS = 1000
SERVICE = "mymaster"


def _ask(port: int, *commands: tuple[str, ...]) -> list[str]:
    """Send commands to one server as raw replies (redis-py: faster than redis-cli runs)."""
    import redis

    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        connection = client.connection_pool.get_connection()
        try:
            replies = []
            for command in commands:
                connection.send_command(*command)
                reply = connection.read_response()
                replies.append(reply.decode() if isinstance(reply, bytes) else str(reply))
            return replies
        finally:
            client.connection_pool.release(connection)
    finally:
        client.close()


def _info(port: int, section: str) -> dict[str, str]:
    fields = {}
    for line in _cli(port, "info", section, timeout=3).splitlines():
        name, sep, value = line.strip().partition(":")
        if sep:
            fields[name] = value
    return fields


@dataclass
class ReplicatedCluster:
    """Six cluster nodes: three masters, each with one replica."""

    workdir: Path
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis+cluster://`` over every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def live(self) -> list[RedisServer]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.process is not None]

    def masters(self) -> list[RedisServer]:
        """The live nodes that are masters now, by their own account."""
        return [n for n in self.live() if _info(n.port, "replication").get("role") == "master"]

    def replica_of(self, master: RedisServer) -> RedisServer:
        """The live node replicating ``master``."""
        for node in self.live():
            info = _info(node.port, "replication")
            if info.get("role") == "slave" and info.get("master_port") == str(master.port):
                return node
        raise LookupError(f"no replica of 127.0.0.1:{master.port}")

    def master_of_slot(self, slot: int) -> RedisServer:
        """The live master that serves ``slot`` now (as its replica-free view says)."""
        for node in self.masters():
            for line in node.cli("cluster", "nodes").splitlines():
                parts = line.split()
                if "myself" not in parts[2]:
                    continue
                for spec in parts[8:]:
                    low, _, high = spec.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        return node
        raise LookupError(f"no live master serves slot {slot}")

    def healthy(self) -> bool:
        """Every slot is served by a live master, and every live node says the cluster is ok."""
        served = 0
        for node in self.live():
            try:
                info, nodes = _ask(node.port, ("CLUSTER", "INFO"), ("CLUSTER", "NODES"))
            except Exception:  # killed meanwhile, or busy failing over
                return False
            if "cluster_state:ok" not in info:
                return False
            for line in nodes.splitlines():
                parts = line.split()
                if len(parts) > 2 and "myself" in parts[2] and "master" in parts[2]:
                    for spec in parts[8:]:
                        low, _, high = spec.partition("-")
                        if low.isdigit():
                            served += int(high or low) - int(low) + 1
        return served == 16384

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Wait until :meth:`healthy`; return the monotonic time it was first seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return time.monotonic()
            time.sleep(0.05)
        raise TimeoutError(f"the cluster was not healthy within {timeout} s")

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until every replica has every write its master took (``WAIT`` on each)."""
        for master in self.masters():
            replicas = _info(master.port, "replication").get("connected_slaves", "0")
            if replicas == "0":
                continue  # a promoted replica whose old master is dead
            wait = ("wait", replicas, str(int(timeout * 1000)))
            out = _cli(master.port, *wait, timeout=timeout + 5)
            if out.strip() != replicas:
                raise TimeoutError(f"the replica of 127.0.0.1:{master.port} did not catch up")

    def stop(self) -> None:
        """Kill every node."""
        for node in self.nodes:
            node.stop()


def start_replicated_cluster(workdir: Path) -> ReplicatedCluster:
    """Start six cluster-enabled servers and join them as 3 masters with 1 replica each."""
    cluster = ReplicatedCluster(workdir)
    try:
        for i in range(6):
            node_dir = workdir / f"node{i}"
            node = RedisServer(
                node_dir,
                extra=(
                    *("--cluster-enabled", "yes"),
                    *("--cluster-config-file", str(node_dir / "nodes.conf")),
                    *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                    # the bus port defaults to port + 10000, which may be taken or past 65535
                    *("--cluster-port", str(free_port())),
                    # a replica takes over at once, however long it was out of touch
                    *("--cluster-replica-validity-factor", "0"),
                    # the masters that live keep serving their slots while one is down
                    # (with the default, yes, every node refuses until the promotion)
                    *("--cluster-require-full-coverage", "no"),
                ),
            )
            node.start()
            cluster.nodes.append(node)
        subprocess.run(
            [
                require_binary("redis-cli"),
                *("--cluster", "create", *(f"127.0.0.1:{n.port}" for n in cluster.nodes)),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
        cluster.wait_healthy()
        deadline = time.monotonic() + 30
        while len(cluster.masters()) != 3 or any(
            _info(n.port, "replication").get("master_link_status", "up") != "up"
            for n in cluster.nodes
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the replicas did not sync with their masters in 30 s")
            time.sleep(0.1)
        # every node must know every other as connected before a failover can be voted
        cluster.wait_healthy()
        return cluster
    except BaseException:
        cluster.stop()
        raise


@dataclass
class SentinelGroup:
    """A primary, one replica, and three sentinels watching them as ``mymaster``."""

    workdir: Path
    servers: list[RedisServer] = field(default_factory=list)
    sentinels: list[RedisServer] = field(default_factory=list)
    service: str = SERVICE

    @property
    def url(self) -> str:
        """``redis+sentinel://`` over every sentinel, service ``mymaster``, database 0."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def primary_port(self) -> int:
        """The primary's port as the first live sentinel reports it."""
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            out = sentinel.cli("sentinel", "get-master-addr-by-name", self.service).split()
            if len(out) == 2:
                return int(out[1])
        raise LookupError("no sentinel knows the primary")

    def primary(self) -> RedisServer:
        """The server that the sentinels name as primary."""
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def promoted(self, old_port: int) -> bool:
        """Whether the sentinels name a live primary other than ``old_port``, writable now."""
        try:
            port = self.primary_port()
            return port != old_port and _info(port, "replication").get("role") == "master"
        except (LookupError, ValueError):
            return False

    def wait_promoted(self, old_port: int, timeout: float = 30.0) -> float:
        """Wait until a live server other than ``old_port`` is primary and writable."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(LookupError, ValueError):
                port = self.primary_port()
                if port != old_port and _info(port, "replication").get("role") == "master":
                    return time.monotonic()
            time.sleep(0.05)
        raise TimeoutError(f"no replica was promoted within {timeout} s")

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until the replica has every write the primary took."""
        out = _cli(self.primary_port(), "wait", "1", str(int(timeout * 1000)), timeout=timeout + 5)
        if out.strip() != "1":
            raise TimeoutError("the replica did not catch up")

    def stop(self) -> None:
        """Kill every process."""
        for server in (*self.sentinels, *self.servers):
            server.stop()


def start_sentinel_group(workdir: Path) -> SentinelGroup:
    """Start a primary, its replica and three sentinels (quorum 2, down after 1 s)."""
    group = SentinelGroup(workdir)
    try:
        primary = RedisServer(workdir / "primary")
        primary.start()
        group.servers.append(primary)
        replica = RedisServer(
            workdir / "replica", extra=("--replicaof", "127.0.0.1", str(primary.port))
        )
        replica.start()
        group.servers.append(replica)
        for i in range(3):
            sentinel_dir = workdir / f"sentinel{i}"
            sentinel_dir.mkdir(parents=True)
            conf = sentinel_dir / "sentinel.conf"
            conf.write_text(
                f"port 0\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            sentinel = _SentinelServer(sentinel_dir, conf=conf)
            sentinel.start()
            group.sentinels.append(sentinel)
        deadline = time.monotonic() + 30
        while True:
            info = _info(primary.port, "replication")
            known = all(
                "num-other-sentinels" in s.cli("sentinel", "master", SERVICE)
                and _sentinel_field(s, "num-slaves") == "1"
                and _sentinel_field(s, "num-other-sentinels") == "2"
                for s in group.sentinels
            )
            if info.get("connected_slaves") == "1" and known:
                return group
            if time.monotonic() > deadline:
                raise TimeoutError("the sentinels did not discover each other in 30 s")
            time.sleep(0.1)
    except BaseException:
        group.stop()
        raise


def _sentinel_field(sentinel: RedisServer, name: str) -> str | None:
    lines = sentinel.cli("sentinel", "master", SERVICE).splitlines()
    for key, value in zip(lines[::2], lines[1::2], strict=False):
        if key.strip() == name:
            return value.strip()
    return None


@dataclass
class _SentinelServer(RedisServer):
    """A ``redis-server --sentinel`` process (the config file must be writable)."""

    conf: Path | None = None

    def start(self) -> None:
        assert self.conf is not None
        argv = [
            require_binary("redis-server"),
            str(self.conf),
            "--sentinel",
            *("--bind", "127.0.0.1", "--port", str(self.port)),
            *("--dir", str(self.workdir)),
        ]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise


@contextlib.contextmanager
def replicated_cluster() -> Iterator[ReplicatedCluster]:
    """A fresh 3+3 cluster in its own temporary directory, killed and removed at the end."""
    require_binary("redis-server")
    require_binary("redis-cli")
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-redis-replicated-"))
    try:
        cluster = start_replicated_cluster(workdir)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def sentinel_group() -> Iterator[SentinelGroup]:
    """A fresh primary, replica and three sentinels, killed and removed at the end."""
    require_binary("redis-server")
    require_binary("redis-cli")
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-redis-sentinel-"))
    try:
        group = start_sentinel_group(workdir)
        try:
            yield group
        finally:
            group.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def reshard(
    cluster: ReplicatedCluster, slots: int, timeout: float = 60.0
) -> subprocess.Popen[bytes]:
    """Start moving ``slots`` slots (and their keys) from one live master to another with
    ``redis-cli --cluster reshard``; return the running process."""
    source, target = cluster.masters()[:2]
    ids = [_ask(node.port, ("CLUSTER", "MYID"))[0] for node in (source, target)]
    return subprocess.Popen(
        [
            require_binary("redis-cli"),
            *("--cluster", "reshard", f"127.0.0.1:{source.port}"),
            *("--cluster-from", ids[0], "--cluster-to", ids[1]),
            *("--cluster-slots", str(slots), "--cluster-yes"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
