"""``llmcache serve`` under load: ``python -m benchmarks.proxy``.

Hits per second, latency percentiles and CPU per hit of the proxy at 64 connections with
``wrk`` (Debian's package) posting the typical chat request, for the memory, SQLite and Redis
tiers, and LiteLLM's proxy with its in-memory cache on the same workload when it is
installed (``--litellm PATH`` to its ``litellm`` command, in a virtualenv of its own:
``python -m venv VENV && VENV/bin/pip install 'litellm[proxy]'``); then
the miss overhead: the proxy in front of the simulator against the simulator alone, one
connection, a new request each time. Every server is started here, on free 127.0.0.1 ports,
and stopped at the end; every load run is bounded by ``wrk -d``. The figures go to
``proxy.json`` and the "Proxy" section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx2

from llmcache.tools.simulator import Simulator

from .workload import chat_request

__all__ = ["Load", "main"]

HERE = Path(__file__).resolve().parent
SECTION = "## Proxy"
TAG = "@@TAG@@"
PATH = "/v1/chat/completions"
# the callers' key; LiteLLM's proxy takes it as its master key, and refuses a weak one
KEY = "sk-bench-" + "5f2b" * 16
_TICKS = os.sysconf("SC_CLK_TCK")

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local template = [==[%(body)s]==]
local unique = %(unique)s
local counter = 0
wrk.body = template
request = function()
  if unique then
    counter = counter + 1
    local tag = "r" .. counter .. "x" .. math.random(1, 1000000000)
    return wrk.format(nil, "%(path)s", nil, (template:gsub("@@TAG@@", tag)))
  end
  return wrk.format(nil, "%(path)s")
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.stderr:write(string.format(
    '{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"socket_errors":%%d,"status_errors":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class Load:
    """One ``wrk`` run's figures.

    :param name: what was measured.
    :param connections: concurrent connections.
    :param requests: requests answered.
    :param seconds: how long it ran.
    :param p50_ms: median latency.
    :param p90_ms: 90th percentile.
    :param p99_ms: 99th percentile.
    :param failed: socket errors plus non-2xx answers.
    :param cpu_us_per_request: the server's CPU time (user + system) per request.
    :param upstream_calls: requests the simulator received during the run.
    """

    name: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    failed: int
    cpu_us_per_request: float | None
    upstream_calls: int

    @property
    def per_second(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, child: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Wait until ``url`` answers (any status); fail at once when ``child`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the server of {url} exited with {child.returncode}")
        try:
            httpx2.get(url, timeout=2)
            return
        except httpx2.TransportError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def cpu_seconds(pids: list[int]) -> float:
    """Return the CPU seconds (user + system) the processes used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def children(pid: int) -> list[int]:
    """Return ``pid`` and its descendants (uvicorn workers, LiteLLM's server)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        for kid in kids:
            found += children(int(kid))
    return found


def wrk(
    url: str,
    script: Path,
    connections: int,
    seconds: float,
    name: str,
    sim: Simulator,
    server_pid: int | None,
) -> Load:
    """Run ``wrk`` against ``url`` and return its figures."""
    pids = children(server_pid) if server_pid else []
    before_cpu = cpu_seconds(pids) if pids else 0.0
    before_calls = sim.count()
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
    done = subprocess.run(
        [*argv, "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    cpu = cpu_seconds(pids) - before_cpu if pids else None
    data = json.loads(done.stderr.strip().splitlines()[-1])
    requests = data["requests"]
    return Load(
        name,
        connections,
        requests,
        data["duration_us"] / 1e6,
        data["p50_us"] / 1000,
        data["p90_us"] / 1000,
        data["p99_us"] / 1000,
        data["socket_errors"] + data["status_errors"],
        cpu * 1e6 / requests if cpu is not None and requests else None,
        sim.count() - before_calls,
    )


def report(load: Load) -> None:
    """Print one run's headline."""
    print(f"  {load.name}: {load.per_second:,.0f}/s, p99 {load.p99_ms:.2f} ms", flush=True)


def lua(workdir: Path, body: str, unique: bool) -> Path:
    """Write a wrk script that posts ``body`` (with a new tag each time when ``unique``)."""
    path = workdir / ("misses.lua" if unique else "hits.lua")
    values = {"body": body, "unique": "true" if unique else "false", "path": PATH, "key": KEY}
    text = _LUA % values
    path.write_text(text)
    return path


@contextmanager
def process(argv: list[str], log: Path, health: str, env: dict[str, str]) -> Iterator[int]:
    """Run a server until the block ends; yield its pid once ``health`` answers."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        wait_http(health, child)
        yield child.pid
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)


class RedisProcess:
    """A private ``redis-server`` on a free port (persistence off); :meth:`restart` keeps it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.child: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no"]
        self.child = subprocess.Popen(
            argv, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        """Kill the server (SIGKILL, like a crash)."""
        if self.child is not None:
            self.child.kill()
            self.child.wait(timeout=10)
            self.child = None

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.stop()
        self.start()


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisProcess]:
    """Run a private ``redis-server`` until the block ends."""
    server = RedisProcess(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def serve_argv(port: int, sim: Simulator, tiers: list[str]) -> list[str]:
    """Return the command line of ``llmcache serve`` over ``sim``."""
    argv = [sys.executable, "-m", "llmcache", "serve", "--port", str(port)]
    argv += ["--upstream-openai", sim.base_url, "--log-level", "warning"]
    for tier in tiers:
        argv += ["--tier", tier]
    return argv


def prime(url: str, body: str) -> str:
    """Send the request twice; return the second answer's ``llmcache-status`` (or ``""``)."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    for _ in range(2):
        response = httpx2.post(url + PATH, content=body, headers=headers, timeout=30)
        response.raise_for_status()
    return response.headers.get("llmcache-status", "")


def litellm_version(command: str) -> str:
    """Return the version of LiteLLM installed beside its ``litellm`` command."""
    python = Path(command).resolve().parent / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip() or "(version unknown)"


def litellm_config(workdir: Path, sim: Simulator) -> Path:
    """Write a LiteLLM proxy config: the simulator as the model, the in-memory cache on."""
    model = chat_request()["model"]
    text = f"""model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {sim.base_url}
      api_key: sk-bench
litellm_settings:
  cache: true
  cache_params:
    type: local
  set_verbose: false
  json_logs: false
general_settings:
  disable_spend_logs: true
"""
    path = workdir / "litellm.yaml"
    path.write_text(text)
    return path


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement; return the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-proxy-bench-"))
    load_start = os.getloadavg()[0]
    body = json.dumps(chat_request("bench"))
    hits_script = lua(workdir, body, unique=False)
    misses_script = lua(workdir, json.dumps(chat_request(TAG)), unique=True)
    env = {"XDG_CACHE_HOME": str(workdir / "cache")}
    loads: list[Load] = []
    with Simulator() as sim, redis_server(workdir) as redis:
        runs = [  # (name, tiers, workers)
            ("memory tier", ["memory://"], 1),
            ("sqlite tier", [f"sqlite:///{workdir / 'bench.db'}"], 1),
            ("redis tier", [redis.url], 1),
            ("memory + redis tiers, 2 workers", ["memory://", redis.url], 2),
        ]
        for name, tier, workers in runs:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            argv = [*serve_argv(port, sim, tier), "--workers", str(workers)]
            log = workdir / f"{name.split()[0]}-{workers}.log"
            with process(argv, log, url + "/healthz", env) as pid:
                for _ in range(4 * workers):  # each worker's L1 gets the answer too
                    assert prime(url, body) == "hit", f"{name}: no hit"
                wrk(url, hits_script, args.connections, 2, "warm-up", sim, None)
                loads.append(
                    wrk(
                        url,
                        hits_script,
                        args.connections,
                        args.seconds,
                        f"llmcache serve, {name}",
                        sim,
                        pid,
                    )
                )
                report(loads[-1])
                if name == "memory tier":
                    single = wrk(
                        url,
                        hits_script,
                        1,
                        args.miss_seconds,
                        "llmcache serve, memory tier, 1 connection",
                        sim,
                        pid,
                    )
                    loads.append(single)
                    report(single)
                    miss = wrk(
                        url,
                        misses_script,
                        1,
                        args.miss_seconds,
                        "miss through llmcache serve (memory tier)",
                        sim,
                        pid,
                    )
        direct = wrk(
            sim.anthropic_base_url,
            misses_script,
            1,
            args.miss_seconds,
            "the simulator alone",
            sim,
            None,
        )
        litellm = shutil.which(args.litellm) if args.litellm else None
        if litellm:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            argv = [
                litellm,
                "--config",
                str(litellm_config(workdir, sim)),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--num_workers",
                "1",
            ]
            litellm_env = {
                **env,
                "LITELLM_LOG": "ERROR",
                "LITELLM_MASTER_KEY": KEY,
                "DISABLE_ADMIN_UI": "True",
            }
            with process(
                argv, workdir / "litellm.log", url + "/health/liveliness", litellm_env
            ) as pid:
                prime(url, body)
                wrk(url, hits_script, args.connections, 2, "warm-up", sim, None)
                loads.append(
                    wrk(
                        url,
                        hits_script,
                        args.connections,
                        args.seconds,
                        f"LiteLLM proxy {litellm_version(litellm)}, in-memory cache",
                        sim,
                        pid,
                    )
                )
                report(loads[-1])
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": [load_start, os.getloadavg()[0]],
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "connections": args.connections,
        "seconds": args.seconds,
        "hits": [asdict(load) | {"per_second": load.per_second} for load in loads],
        "miss": asdict(miss) | {"per_second": miss.per_second},
        "direct": asdict(direct) | {"per_second": direct.per_second},
        "litellm": litellm is not None,
    }


def _row(load: dict[str, Any]) -> str:
    cpu = load["cpu_us_per_request"]
    return (
        f"| {load['name']} | {load['per_second']:,.0f} | {load['p50_ms']:.2f} | "
        f"{load['p90_ms']:.2f} | {load['p99_ms']:.2f} | "
        f"{'-' if cpu is None else f'{cpu:,.0f} µs'} | {load['failed']} | "
        f"{load['upstream_calls']} |"
    )


def section(data: dict[str, Any], soak: dict[str, Any] | None) -> str:
    """Return the "Proxy" section of ``RESULTS.md``."""
    hits = data["hits"]
    lines = [
        SECTION,
        "",
        f"`python -m benchmarks.proxy` ({data['when']}, {data['machine']}): `wrk -t1 "
        f"-c{data['connections']} -d{data['seconds']}s` posting the typical chat request "
        "(1.7 KB in, ~1.4 KB out) to `llmcache serve` (one process unless the row says "
        "otherwise) primed with its answer, so every request is a hit; `wrk` and the "
        "server share the machine's two cores. CPU per hit is the server's user + system "
        "time over the requests it answered.",
        "",
        "| server | hits/s | p50 ms | p90 ms | p99 ms | CPU per hit | failed | upstream calls |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
        *(_row(load) for load in hits),
        "",
    ]
    memory = next(h for h in hits if h["name"] == "llmcache serve, memory tier")
    litellm = next((h for h in hits if h["name"].startswith("LiteLLM")), None)
    verdicts = [
        f"- Proxy hit p99 at {data['connections']} connections, memory tier: "
        f"**{memory['p99_ms']:.2f} ms** (target ≤ 1.5 ms)."
    ]
    if litellm is not None and litellm["per_second"]:
        ratio = memory["per_second"] / litellm["per_second"]
        verdicts.insert(
            0,
            f"- Hits per second against LiteLLM's proxy with its in-memory cache: "
            f"**{ratio:.1f}x** (target ≥ 5x).",
        )
    else:
        verdicts.insert(0, "- LiteLLM's proxy did not run (not installed): no anchor in this run.")
    miss, direct = data["miss"], data["direct"]
    added = miss["p50_ms"] - direct["p50_ms"]
    verdicts.append(
        "- Miss overhead, one connection, a new request each time: "
        f"p50 **{miss['p50_ms']:.2f} ms** through the proxy against "
        f"{direct['p50_ms']:.2f} ms from the simulator alone: "
        f"**{added:+.2f} ms** added (target ≤ 1.5 ms); p99 {miss['p99_ms']:.2f} against "
        f"{direct['p99_ms']:.2f} ms; {miss['failed']} failed."
    )
    lines += verdicts
    rate = memory["per_second"]
    lines += [
        "",
        "Reading the figures:",
        "",
        f"- `wrk` keeps {data['connections']} requests in flight, each connection waiting for "
        "its answer, so the median latency is about connections / hits per second (Little's "
        f"law: {data['connections']} / {rate:,.0f} = {data['connections'] / rate * 1000:.1f} ms). "
        f"A p99 of 1.5 ms at {data['connections']} connections needs "
        f"{data['connections'] / 0.0015:,.0f} hits/s or more, out of reach of one Python "
        "process on a core it shares with `wrk`; what a hit costs the proxy is the CPU column, "
        "and the 1-connection row is the latency of a hit with nothing queued before it.",
        "- The machine is shared: its load average was "
        f"{data['load_average'][0]:.1f} at the start of the run and "
        f"{data['load_average'][1]:.1f} at the end (2 cores), so tails are longer than on an "
        "idle machine.",
    ]
    sqlite = next((h for h in hits if "sqlite" in h["name"]), None)
    if sqlite is not None and sqlite["upstream_calls"]:
        lines.append(
            "- The SQLite tier reads through one connection in a worker thread, so "
            f"{data['connections']} callers queue for it; a read slower than the tier's "
            "timeout (1 s) is skipped as a failed tier (fail-open) and goes upstream: the "
            f"{sqlite['upstream_calls']} upstream call(s) of that row. A memory L1 in front "
            "of it (as in the workers row) takes the hot entries off it."
        )
    if soak is not None:
        lines += ["", "### Soak", "", soak_text(soak)]
    return "\n".join(lines) + "\n"


def soak_text(soak: dict[str, Any]) -> str:
    """Return the soak paragraph."""
    return (
        f"`python -m benchmarks.proxy_soak` ({soak['when']}): {soak['minutes']:g} minutes of "
        f"mixed traffic ({soak['mix']}) through `llmcache serve` on a memory + Redis tier, "
        f"Redis killed and restarted empty at minute {soak['restart_at_minutes']:g}. "
        f"**{soak['failed']} failed** of {soak['requests']:,} requests "
        f"({soak['hits']:,} hits, {soak['misses']:,} misses, {soak['streams']:,} streams); "
        f"proxy RSS {soak['rss_start_mb']:.1f} MB after the warm-up (the memory tier full), "
        f"{soak['rss_end_mb']:.1f} MB at the end; every 30 s: "
        + ", ".join(f"{mb:.0f}" for _, mb in soak.get("rss_mb", []))
        + " MB."
    )


def rewrite_results(path: Path = HERE / "RESULTS.md") -> None:
    """Rewrite the "Proxy" section of ``RESULTS.md`` from ``proxy.json`` (and the soak's)."""
    data = json.loads((HERE / "proxy.json").read_text())
    soak_file = HERE / "proxy-soak.json"
    soak = json.loads(soak_file.read_text()) if soak_file.exists() else None
    text = path.read_text() if path.exists() else "# llmcache benchmark results\n"
    new = section(data, soak)
    if SECTION in text:
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + new + ("\n" + text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + new
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Measure, write ``proxy.json`` and rewrite the "Proxy" section of ``RESULTS.md``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy", description=__doc__)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10, help="each hit run")
    parser.add_argument("--miss-seconds", type=float, default=5, help="each miss run")
    parser.add_argument(
        "--litellm", default=None, metavar="PATH", help="LiteLLM's `litellm` command"
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    data = measure(args)
    (HERE / "proxy.json").write_text(json.dumps(data, indent=2) + "\n")
    rewrite_results()
    print(section(data, None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
