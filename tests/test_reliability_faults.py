"""A backend that dies, vanishes or crawls never breaks a call, and caching comes back.

Real servers, started and stopped here on 127.0.0.1: Redis and memcached processes of
each test, and a throwaway PostgreSQL cluster of the session (``initdb``/``pg_ctl``, as the
``postgres`` user when run as root). The faults:

- **killed**: the server is killed (SIGKILL; ``pg_ctl -m immediate`` for PostgreSQL) and
  started again on the same port;
- **stall**, **reset**, **slow**: a :class:`~tests.faultproxy.FaultProxy` between the
  client and the server blackholes every connection, resets them, or holds every answer
  back for longer than the tier's timeout, and then lets traffic through again;
- **sluggish**: the proxy holds answers back for less than the timeout: no error at all.

In each case every user call returns the right answer (the simulator's answer embeds a
digest of its request), the first calls pay at most about the timeout, calls made while
the circuit is open pay nearly nothing, errors are counted, and after the fault ends a
fresh answer is stored and served from the tier again. The figures go to RELIABILITY.md
(set ``LLMCACHE_RELIABILITY_FIGURES=path.json`` to collect them).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import chat
from openai import AsyncOpenAI, OpenAI

from llmcache import CachedClient
from llmcache.tools.simulator import Simulator, request_digest
from tests.faultproxy import FaultProxy, Mode, record
from tests.memcached_fixtures import MemcachedServer
from tests.redis_fixtures import start_redis_server
from tests.servers import free_port, port_open, require_binary, unavailable, wait_for_port

TIMEOUT = 1.0  # the tier's per-call timeout: the product's default
THRESHOLD = 3
RECOVERY = 1.0  # circuit breaker: seconds before a trial call
DEAD_TIMEOUT = 0.5  # memcached pool: seconds a failed server is skipped
OPEN_CALLS = 20
RECOVERY_LIMIT = 20.0  # seconds we wait for caching to resume before failing
# The most one user call may take while its tier misbehaves: one timeout, plus a whole
# second for the upstream call and a loaded machine. Paying the timeout twice fails.
CALL_LIMIT = 2 * TIMEOUT
HUNG = CALL_LIMIT + 3.0  # a call still running after this long is reported as hung
SLOW = 2.5  # the "slow" fault: answers held back this long (past the timeout)
SLUGGISH = 0.05  # the "sluggish" fault: answers held back, well within the timeout
KINDS = ["redis", "memcached", "postgresql"]


# -- a throwaway PostgreSQL cluster that the tests may kill --------------------------------


def _postgres_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return found[0] if found else shutil.which(name)


@dataclass
class PostgresCluster:
    """A PostgreSQL cluster in a temporary directory, on a free port, owned by the tests."""

    workdir: Path
    pg_ctl: str
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def _pg_ctl(self, *args: str) -> None:
        argv = [self.pg_ctl, "-D", str(self.data), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200"
        )
        log = str(self.workdir / "postgres.log")
        self._pg_ctl("-o", options, "-l", log, "-w", "start")
        wait_for_port(self.port)

    def kill(self) -> None:
        """Stop at once, without a checkpoint (the next start runs crash recovery)."""
        self._pg_ctl("-m", "immediate", "-w", "stop")
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if port_open(self.port):
            self._pg_ctl("-m", "fast", "-w", "stop")

    def url(self, port: int | None = None) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/postgres"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        unavailable("PostgreSQL's initdb and pg_ctl")
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-faults-pg-"))
    os.chmod(workdir, 0o755)
    argv = [initdb, "-D", str(workdir / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        argv = ["runuser", "-u", "postgres", "--", *argv]
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
        cluster = PostgresCluster(workdir, pg_ctl)
        cluster.start()
    except (OSError, subprocess.SubprocessError, TimeoutError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        unavailable(f"a throwaway PostgreSQL cluster ({exc})")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- what the tests break --------------------------------------------------------------------


@dataclass
class Target:
    """A real server of one kind, with the tier URL that reaches it (maybe via a proxy)."""

    kind: str
    port: int
    kill: Callable[[], None]
    restart: Callable[[], None]
    table: str = ""

    def url(self, port: int | None = None) -> str:
        port = port or self.port
        query = f"timeout={TIMEOUT}"
        if self.kind == "redis":
            return f"redis://127.0.0.1:{port}/0?{query}"
        if self.kind == "memcached":
            return f"memcached://127.0.0.1:{port}?{query}&dead_timeout={DEAD_TIMEOUT}"
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres?{query}&table={self.table}"


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    kind = request.param
    if kind == "redis":
        require_binary("redis-server")
        workdir = Path(tempfile.mkdtemp(prefix="llmcache-faults-redis-"))
        redis = start_redis_server(workdir)
        try:
            yield Target(kind, redis.port, redis.stop, redis.start)
        finally:
            redis.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    elif kind == "memcached":
        require_binary("memcached")
        memcached = MemcachedServer()
        memcached.start()
        try:
            yield Target(kind, memcached.port, memcached.stop, memcached.start)
        finally:
            memcached.stop()
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        table = "t_" + uuid.uuid4().hex[:12]
        try:
            yield Target(kind, cluster.port, cluster.kill, cluster.start, table)
        finally:
            if not port_open(cluster.port):
                cluster.start()
            _drop_table(cluster.url(), table)


def _drop_table(url: str, table: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for name in (table, f"{table}_meta", f"{table}_locks"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    finally:
        engine.dispose()


# -- running a client through an outage ------------------------------------------------------


Ask = Callable[[dict[str, Any]], Any]


@dataclass
class Outage:
    """What one outage cost the calls made through it."""

    calls: int = 0
    failures: list[str] = field(default_factory=list)  # user-visible: exceptions raised
    wrong: list[str] = field(default_factory=list)  # answers to another request
    first_call: float = 0.0
    slowest_call: float = 0.0
    open_total: float = 0.0  # OPEN_CALLS calls made once the circuit was open
    errors_at_open: int = 0
    errors_while_open: int = 0
    recovery: float | None = None
    survived: bool | None = None  # the entry stored before the fault is a hit afterwards


class Runner:
    """Make calls through a cached client and check and time each one."""

    def __init__(self, ask: Ask, stats: Callable[[], Any], label: str) -> None:
        self.ask = ask
        self.stats = stats
        self.label = label
        self.outage = Outage()

    def call(self, prompt: str, *, limit: float | None = None) -> tuple[Any, float]:
        """Ask ``prompt``; return the response (``None`` if the call failed) and its time."""
        kwargs = chat(prompt)
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["response"] = self.ask(kwargs)
            except BaseException as exc:
                box["error"] = exc

        started = time.perf_counter()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        # a call that hangs must fail the test, not the whole session
        worker.join(limit if limit is not None else HUNG)
        elapsed = time.perf_counter() - started
        self.outage.calls += 1
        if worker.is_alive():
            self.outage.failures.append(f"{prompt!r} still running after {elapsed:.1f} s")
            return None, elapsed
        if "error" in box:
            self.outage.failures.append(f"{prompt!r}: {box['error']!r}")
            return None, elapsed
        response = box["response"]
        expected = f"[{request_digest(kwargs)}]"
        content = response.choices[0].message.content or ""
        if not content.startswith(expected):
            self.outage.wrong.append(f"{prompt!r} got {content[:40]!r}")
        return response, elapsed

    def cached(self, prompt: str) -> bool:
        """Ask ``prompt`` twice; tell whether the second answer came from the tier."""
        self.call(prompt)
        response, _ = self.call(prompt)
        return response is not None and response.cache_hit and response.cache_tier == self.label

    def run(self, breaks: Callable[[], None], heals: Callable[[], None]) -> Outage:
        """Warm the tier, break it, call through the fault, heal it, wait for caching."""
        out = self.outage
        assert self.cached("warm"), "the tier does not cache before any fault"
        breaks()
        _, out.first_call = self.call("outage 0")
        out.slowest_call = out.first_call
        for n in range(1, THRESHOLD):  # enough failures to open the circuit
            _, elapsed = self.call(f"outage {n}")
            out.slowest_call = max(out.slowest_call, elapsed)
        out.errors_at_open = self.stats().errors
        started = time.perf_counter()
        for n in range(OPEN_CALLS):
            if len(out.failures) >= 2:  # calls hang: the verdict is in, spare the time
                break
            _, elapsed = self.call(f"while open {n % 5}")
            out.slowest_call = max(out.slowest_call, elapsed)
        out.open_total = time.perf_counter() - started
        out.errors_while_open = self.stats().errors - out.errors_at_open
        heals()
        healed = time.monotonic()
        attempt = 0
        while time.monotonic() - healed < RECOVERY_LIMIT:
            if self.cached(f"probe {attempt}"):
                out.recovery = time.monotonic() - healed
                break
            attempt += 1
            time.sleep(0.05)
        response, _ = self.call("warm")
        out.survived = bool(response is not None and response.cache_hit)
        return out


def _sync_runner(openai_client: OpenAI, url: str, label: str) -> tuple[Runner, Callable[[], None]]:
    client = CachedClient(
        openai_client,
        tiers=[url],
        failure_threshold=THRESHOLD,
        recovery_time=RECOVERY,
        namespace="faults",
    )
    runner = Runner(lambda kwargs: client.chat.completions.create(**kwargs), client.stats, label)
    return runner, client.close


def _async_runner(sim: Simulator, url: str, label: str) -> tuple[Runner, Callable[[], None]]:
    """The same runner over an async client, all its calls on one event loop of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="faults-loop", daemon=True)
    thread.start()
    upstream = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)

    async def build() -> Any:
        return CachedClient(
            upstream,
            tiers=[url],
            failure_threshold=THRESHOLD,
            recovery_time=RECOVERY,
            namespace="faults",
        )

    client = asyncio.run_coroutine_threadsafe(build(), loop).result()

    def ask(kwargs: dict[str, Any]) -> Any:
        coroutine = client.chat.completions.create(**kwargs)
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    async def shut() -> None:
        try:
            await client.close()
        finally:
            await upstream.close()

    def close() -> None:
        try:
            asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    return Runner(ask, client.stats, label), close


def _check(out: Outage, name: str, *, stalls: bool) -> None:
    """Assert what every fault must show, and record the figures."""
    record(
        f"faults/{name}",
        calls=out.calls,
        user_failures=len(out.failures),
        wrong_answers=len(out.wrong),
        first_call_s=round(out.first_call, 3),
        slowest_call_s=round(out.slowest_call, 3),
        open_calls=OPEN_CALLS,
        open_total_s=round(out.open_total, 3),
        open_mean_ms=round(1000 * out.open_total / OPEN_CALLS, 2),
        errors_counted=out.errors_at_open + out.errors_while_open,
        errors_while_open=out.errors_while_open,
        recovery_s=None if out.recovery is None else round(out.recovery, 3),
        entry_survived=out.survived,
        timeout_s=TIMEOUT,
        recovery_time_s=RECOVERY,
    )
    assert out.failures == [], f"user-visible failures: {out.failures}"
    assert out.wrong == [], f"answers to other requests: {out.wrong}"
    assert out.first_call < CALL_LIMIT, f"the first call took {out.first_call:.2f} s"
    assert out.slowest_call < CALL_LIMIT, f"a call took {out.slowest_call:.2f} s"
    assert out.errors_at_open >= THRESHOLD, "the failures were not counted as errors"
    # once open, the tier is skipped: only the odd half-open trial call can fail again
    assert out.errors_while_open <= 4
    assert out.open_total < 2.0, f"{OPEN_CALLS} calls took {out.open_total:.2f} s while open"
    if not stalls:
        assert out.open_total < 1.0
    assert out.recovery is not None, "caching did not resume after the fault ended"


# -- the tests ---------------------------------------------------------------------------------


def test_killed_and_restarted_server_never_fails_a_call_and_caching_resumes(
    target: Target, openai_client: OpenAI, sim: Simulator
) -> None:
    runner, close = _sync_runner(openai_client, target.url(), f"L1:{target.kind}")
    try:
        out = runner.run(target.kill, target.restart)
    finally:
        close()
    _check(out, f"killed/{target.kind}", stalls=False)
    if target.kind == "postgresql":
        assert out.survived, "a durable store lost an entry over a restart"


@pytest.mark.parametrize("mode", ["stall", "reset", "slow"])
def test_misbehaving_connection_never_fails_a_call_and_caching_resumes(
    target: Target, mode: Mode | str, openai_client: OpenAI, sim: Simulator
) -> None:
    proxy = FaultProxy(target.port).start()
    runner, close = _sync_runner(openai_client, target.url(proxy.port), f"L1:{target.kind}")
    fault: Mode = "delay" if mode == "slow" else mode  # type: ignore[assignment]
    try:
        out = runner.run(lambda: proxy.set_mode(fault, delay=SLOW), lambda: proxy.set_mode("pass"))
    finally:
        proxy.stop()
        close()
    _check(out, f"{mode}/{target.kind}", stalls=mode != "reset")
    assert out.survived, "the server kept its entries; the cache must find them again"


def test_blackholed_server_never_fails_an_async_call_and_caching_resumes(
    target: Target, sim: Simulator
) -> None:
    proxy = FaultProxy(target.port).start()
    runner, close = _async_runner(sim, target.url(proxy.port), f"L1:{target.kind}")
    try:
        out = runner.run(lambda: proxy.set_mode("stall"), lambda: proxy.set_mode("pass"))
    finally:
        proxy.stop()
        close()
    _check(out, f"stall-async/{target.kind}", stalls=True)


def test_sluggish_server_within_the_timeout_still_serves_hits_without_errors(
    target: Target, openai_client: OpenAI, sim: Simulator
) -> None:
    proxy = FaultProxy(target.port).start()
    runner, close = _sync_runner(openai_client, target.url(proxy.port), f"L1:{target.kind}")
    try:
        proxy.set_mode("delay", delay=SLUGGISH)
        hits = sum(runner.cached(f"sluggish {n}") for n in range(5))
        errors = runner.stats().errors
    finally:
        proxy.stop()
        close()
    out = runner.outage
    record(
        f"faults/sluggish/{target.kind}",
        calls=out.calls,
        user_failures=len(out.failures),
        wrong_answers=len(out.wrong),
        hits=hits,
        errors_counted=errors,
        delay_s=SLUGGISH,
    )
    assert out.failures == []
    assert out.wrong == []
    assert hits == 5
    assert errors == 0
