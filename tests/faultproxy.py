"""A fault-injecting TCP proxy on 127.0.0.1 for the reliability tests, and their figures.

:class:`FaultProxy` listens on a free loopback port and forwards every connection to a
backend server, until told to misbehave:

======== ==================================================================================
mode     what a client of the proxy sees
======== ==================================================================================
pass     the backend, unchanged
delay    the backend, but every answer is held back ``delay`` seconds (a slow backend)
stall    a blackhole: connections are accepted and requests read, but nothing ever comes
         back, on new and already open connections alike
reset    every open connection is reset (TCP RST) and new ones are reset once accepted
refuse   nothing listens: connections are refused, as when the server is dead
======== ==================================================================================

The reliability tests also write what they measured with :func:`record`; when the
environment variable ``LLMCACHE_RELIABILITY_FIGURES`` names a file, the figures are
written there as JSON when the test process exits (the source of ``RELIABILITY.md``).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Literal

from tests.servers import free_port

__all__ = ["FIGURES", "FaultProxy", "Mode", "record", "running_proxy"]

Mode = Literal["pass", "delay", "stall", "reset", "refuse"]
POLL = 0.05  # how often blocked proxy threads look at the mode and the stop flag
CHUNK = 65536


def _hard_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so that the peer gets a RST rather than a FIN."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with suppress(OSError):
        sock.close()


def _soft_close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


class _Link:
    """One client connection and, unless stalled from the start, its backend connection."""

    def __init__(self, client: socket.socket, backend: socket.socket | None) -> None:
        self.client = client
        self.backend = backend
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def close(self, *, reset: bool = False) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for sock in (self.client, self.backend):
            if sock is not None:
                (_hard_close if reset else _soft_close)(sock)


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``, with faults on demand.

    :param target_port: the backend server's port.
    :param port: the port to listen on (a free one when ``None``); kept across
        :meth:`set_mode` ``("refuse")`` and back.
    """

    def __init__(
        self, target_port: int, *, target_host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self.port = port if port is not None else free_port()
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.accepted = 0
        self.resets = 0
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- control -------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: where clients connect."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        """Listen and forward (mode ``pass``)."""
        self.mode = "pass"
        self._listen()
        return self

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._stopping.set()
        self._unlisten()
        self._drop_links(reset=False)

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        """Switch behaviour; ``reset`` and ``refuse`` also reset every open connection."""
        if mode not in ("pass", "delay", "stall", "reset", "refuse"):
            raise ValueError(f"unknown proxy mode {mode!r}")
        self.delay = delay
        leaving_stall = self.mode == "stall" and mode != "stall"
        self.mode = mode
        if leaving_stall:
            # bytes were swallowed: the old connections can never be in step again
            self._drop_links(reset=True)
        if mode in ("reset", "refuse"):
            self._drop_links(reset=True)
        if mode == "refuse":
            self._unlisten()
        elif self._listener is None and not self._stopping.is_set():
            self._listen()

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        with self._lock:
            return sum(1 for link in self._links if not link.closed.is_set())

    # -- internals -----------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    listener.close()
                    raise
                time.sleep(POLL)
        listener.listen(128)
        listener.settimeout(POLL)
        self._listener = listener
        self._accepting = threading.Thread(
            target=self._accept_loop, args=(listener,), name="faultproxy-accept", daemon=True
        )
        self._accepting.start()

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(OSError):
                listener.close()
        thread, self._accepting = self._accepting, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _drop_links(self, *, reset: bool) -> None:
        with self._lock:
            links, self._links = self._links, set()
        for link in links:
            if reset and not link.closed.is_set():
                self.resets += 1
            link.close(reset=reset)

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        mode = self.mode
        if mode in ("reset", "refuse"):
            self.resets += 1
            _hard_close(client)
            return
        backend = None
        if mode != "stall":
            try:
                backend = socket.create_connection(self.target, timeout=2)
            except OSError:
                self.resets += 1
                _hard_close(client)
                return
            backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, backend)
        with self._lock:
            self._links.add(link)
        self._pump(link, client, backend, upstream=True)
        if backend is not None:
            self._pump(link, backend, client, upstream=False)

    def _pump(
        self, link: _Link, src: socket.socket, dst: socket.socket | None, *, upstream: bool
    ) -> None:
        def run() -> None:
            src.settimeout(POLL)
            try:
                while not link.closed.is_set():
                    try:
                        data = src.recv(CHUNK)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    self._forward(link, data, dst, upstream=upstream)
            except OSError:
                pass
            finally:
                link.close()

        name = "faultproxy-up" if upstream else "faultproxy-down"
        threading.Thread(target=run, name=name, daemon=True).start()

    def _forward(
        self, link: _Link, data: bytes, dst: socket.socket | None, *, upstream: bool
    ) -> None:
        if self.mode == "stall" or dst is None:
            return  # a blackhole: read and dropped, never answered
        if self.mode == "delay" and not upstream:
            deadline = time.monotonic() + self.delay
            while not link.closed.is_set() and time.monotonic() < deadline:
                time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
            if self._stalled():  # stalled while this answer was held back
                return
        dst.sendall(data)

    def _stalled(self) -> bool:
        return self.mode == "stall"


@contextmanager
def running_proxy(target_port: int) -> Iterator[FaultProxy]:
    """Run a :class:`FaultProxy` in front of ``127.0.0.1:target_port`` for a block."""
    proxy = FaultProxy(target_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


# -- figures ------------------------------------------------------------------------------

FIGURES: dict[str, dict[str, Any]] = {}
_FIGURES_LOCK = threading.Lock()


def record(name: str, **values: Any) -> None:
    """Keep a measurement for RELIABILITY.md under ``name`` (merged with earlier ones)."""
    with _FIGURES_LOCK:
        FIGURES.setdefault(name, {}).update(values)


def _write_figures() -> None:
    target = os.environ.get("LLMCACHE_RELIABILITY_FIGURES")
    if not target or not FIGURES:
        return
    existing: dict[str, Any] = {}
    with suppress(OSError, ValueError), open(target) as handle:
        existing = json.load(handle)
    existing.update(FIGURES)
    with open(target, "w") as handle:
        json.dump(existing, handle, indent=2, sort_keys=True, default=str)


atexit.register(_write_figures)
