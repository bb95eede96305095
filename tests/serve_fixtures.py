"""Fixtures for ``llmcache serve``: the app in-process, and real ``llmcache serve`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from llmcache.serve import ServeApp, ServeConfig, create_app
from llmcache.tools.simulator import Simulator
from tests.servers import free_port, wait_for_port

__all__ = ["ServeProcess", "in_process", "start_serve"]


def in_process(sim: Simulator, **options: Any) -> tuple[ServeApp, httpx2.AsyncClient]:
    """Return the proxy app over ``sim`` and an httpx2 client that calls it in-process."""
    options.setdefault("tiers", ("memory://",))
    options.setdefault("upstream_openai", sim.base_url)
    options.setdefault("upstream_anthropic", sim.anthropic_base_url)
    config = ServeConfig(**options)
    app = create_app(config)
    client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://proxy")
    return app, client


@dataclass
class ServeProcess:
    """A running ``llmcache serve`` on 127.0.0.1, its output in ``log``."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop the server (SIGTERM: a graceful shutdown) and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace")


def start_serve(
    sim: Simulator, workdir: Path, *args: str, env: dict[str, str] | None = None
) -> ServeProcess:
    """Start ``llmcache serve`` over ``sim`` on a free port and wait until it answers."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    argv = [
        sys.executable,
        "-m",
        "llmcache",
        "serve",
        "--port",
        str(port),
        "--upstream-openai",
        sim.base_url,
        "--upstream-anthropic",
        sim.anthropic_base_url,
        "--access-log",
        "--log-level",
        "debug",
        *args,
    ]
    environment = {**os.environ, "XDG_CACHE_HOME": str(workdir / "cache"), **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environment)
    served = ServeProcess(process, port, log, argv)
    try:
        wait_for_port(port, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(served.url + "/healthz", timeout=2).status_code == 200:
                    return served
            except httpx2.TransportError:
                time.sleep(0.1)
        raise TimeoutError("llmcache serve did not answer /healthz")
    except BaseException:
        served.stop(signal.SIGKILL)
        raise RuntimeError(f"llmcache serve did not start:\n{served.output()}") from None
