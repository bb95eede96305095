"""Where the measuring process and the servers run: pinned, and placed by measurement.

The measuring process is pinned to one core (before any thread starts: Linux affinity is per
thread, and new threads inherit it). Whether the servers are better on the other core or on
the same one depends on the machine: on some virtual machines a loopback round trip that
wakes a process on another virtual CPU costs several times one that stays on the same core.
So the run measures both layouts with a throwaway ``redis-server`` (raw ``GET`` round trips,
interleaved) and puts every server where round trips are faster, reporting both figures.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .servers import Redis, binary

__all__ = ["Placement", "place"]


@dataclass
class Placement:
    """The cores chosen, and the round trips that chose them."""

    measuring_cpu: int | None
    server_cpu: int | None
    round_trips_us: dict[str, float] = field(default_factory=dict)
    spare_cpu: int | None = None  # a core the measuring process does not run on

    def describe(self) -> str:
        """Say where everything runs, and why."""
        if self.measuring_cpu is None:
            return "not pinned (fewer than two CPUs available)"
        where = (
            "the same CPU" if self.server_cpu == self.measuring_cpu else f"CPU {self.server_cpu}"
        )
        figures = ", ".join(f"{k}: {v:.1f} µs" for k, v in self.round_trips_us.items())
        return (
            f"measuring process on CPU {self.measuring_cpu}; servers (redis-server, memcached, "
            f"the simulator) on {where} (`taskset`), the layout with the faster loopback round "
            f"trip (median raw redis-py GET: {figures}); PostgreSQL is the machine's own "
            "server, not pinned"
        )


def _round_trip_us(server: Redis, samples: int = 7, calls: int = 300) -> list[float]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        client.set("calibration", b"x" * 1400)
        client.get("calibration")
        medians = []
        for _ in range(samples):
            start = time.perf_counter()
            for _ in range(calls):
                client.get("calibration")
            medians.append((time.perf_counter() - start) / calls * 1e6)
        return medians
    finally:
        client.close()


def place() -> Placement:
    """Pin this process to its first core and choose the servers' core by measurement."""
    if not hasattr(os, "sched_setaffinity"):
        return Placement(None, None)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return Placement(None, None)
    mine, other = cores[0], cores[1]
    os.sched_setaffinity(0, {mine})
    if binary("redis-server") is None:
        return Placement(mine, other, spare_cpu=other)
    workdir = Path(tempfile.mkdtemp(prefix="llmcache-bench-pin-"))
    layouts = {"other CPU": other, "same CPU": mine}
    servers = {name: Redis(workdir / name.replace(" ", "-"), cpu) for name, cpu in layouts.items()}
    try:
        for server in servers.values():
            server.start()
        found: dict[str, list[float]] = {name: [] for name in layouts}
        for _ in range(3):  # interleaved, so that a burst of noise hits both
            for name, server in servers.items():
                found[name] += _round_trip_us(server)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    figures = {name: statistics.median(values) for name, values in found.items()}
    best = min(figures, key=figures.__getitem__)
    return Placement(mine, layouts[best], figures, spare_cpu=other)
