"""What the figures were measured on: the machine, the software versions, the pinning."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .servers import binary, postgres_available, postgres_version

__all__ = ["Machine", "describe", "load_average"]

CODE_PATHS = ("llmcache", "llmcache_redis", "llmcache_sql", "llmcache_memcached")
PACKAGES = (
    "llmcache",
    "openai",
    "pydantic",
    "msgpack",
    "orjson",
    "redis",
    "sqlalchemy",
    "aiosqlite",
    "psycopg",
    "pymemcache",
)


@dataclass
class Machine:
    """The machine and the versions of everything measured."""

    cpu: str
    cores: int
    memory_gb: float
    system: str
    placement: str
    versions: dict[str, str] = field(default_factory=dict)
    load: list[tuple[str, str]] = field(default_factory=list)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else "?"
    )


def _commit() -> str:
    """Return the checkout's commit, and whether the code measured differs from it."""
    root = Path(__file__).resolve().parent.parent
    commit = _output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    status = _output_all(["git", "-C", str(root), "status", "--porcelain", "--", *CODE_PATHS])
    return commit + (" + uncommitted changes" if status.strip() else "")


def _output_all(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return ""
    return done.stdout


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def describe(placement: str) -> Machine:
    """Collect the machine's description and every version the report prints."""
    versions = {"python": sys.version.split()[0], "llmcache commit": _commit()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["SQLite library"] = sqlite3.sqlite_version
    redis_server = binary("redis-server")
    versions["redis-server"] = (
        _output([redis_server, "--version"]).split(" ")[2].removeprefix("v=")
        if redis_server
        else "not found"
    )
    memcached = binary("memcached")
    versions["memcached"] = (
        _output([memcached, "-V"]).removeprefix("memcached ") if memcached else "not found"
    )
    versions["PostgreSQL server"] = postgres_version() if postgres_available() else "not used"
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 1,
        memory_gb=_memory_gb(),
        system=f"{platform.system()} {platform.release()}",
        placement=placement,
        versions=versions,
    )
