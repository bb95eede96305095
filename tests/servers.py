"""Helpers for test fixtures that start real servers on free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import time
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str) -> NoReturn:
    """Skip a test whose server is missing, except in CI, where it is a failure."""
    if IN_CI:
        pytest.fail(f"{what} is not available; CI runs every backend test")
    pytest.skip(f"{what} is not available")


def require_binary(name: str) -> str:
    """Return the path of a server binary, or skip (fail in CI) when it is missing."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        unavailable(f"the {name!r} binary")
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    """Wait until something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Tell whether something accepts connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False
