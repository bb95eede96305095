"""The simulator's HTTP server: routing, failures and edits on demand, request records."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, cast
from urllib.parse import urlsplit

from llmcache.tools.simulator import anthropic_api, genai_api, openai_api
from llmcache.tools.simulator.common import JSON, Endpoint, error

__all__ = ["RecordedRequest", "Simulator"]


@dataclass(frozen=True)
class RecordedRequest:
    """Describe one request the simulator received (header names are lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


_ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": openai_api.chat,
    "/v1/completions": openai_api.completions,
    "/v1/embeddings": openai_api.embeddings,
    "/v1/responses": openai_api.responses,
    "/v1/messages": anthropic_api.messages,
}


class _Server(ThreadingHTTPServer):
    """Serve each connection on a daemon thread; never block close on open connections."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    simulator: Simulator

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (``getfqdn``), which can be slow."""
        TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore connection errors (clients hanging up mid-stream); stay silent on stderr."""


class _Handler(BaseHTTPRequestHandler):
    """Answer one HTTP/1.1 connection, keeping it alive between requests."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # buffer each answer into a single write

    def setup(self) -> None:
        """Register the connection so ``Simulator.stop`` can cut it."""
        super().setup()
        self.simulator = cast(_Server, self.server).simulator
        self.simulator._track(self.connection, add=True)

    def finish(self) -> None:
        """Flush and forget the connection."""
        try:
            super().finish()
        finally:
            self.simulator._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: the benchmarks must not pay for stderr writes."""

    def do_POST(self) -> None:
        """Record the request, then answer it (or fail it, as ``fail_next`` asked)."""
        sim, delay = self.simulator, self.simulator.delay
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw) if raw or self.command == "POST" else {}
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        record = body if isinstance(body, dict) else {}
        failure = sim._arrive(RecordedRequest(self.command, path, headers, record))
        endpoint = (
            (_ENDPOINTS.get(path) or genai_api.route(path)) if self.command == "POST" else None
        )
        if failure is not None:
            return self._send_json(failure, error("simulated failure", "server_error"), delay)
        if endpoint is None:
            unknown = f"Unknown request URL: {self.command} {path}."
            return self._send_json(404, error(unknown, "invalid_request_error"), delay)
        if not isinstance(body, dict):
            message = "The request body is not a JSON object."
            return self._send_json(400, error(message, "invalid_request_error"), delay)
        try:
            result = endpoint(sim._seen, body)
        except Exception as exc:  # a simulator bug: report it to the client, not to stderr
            return self._send_json(500, error(f"simulator error: {exc!r}", "server_error"), delay)
        if isinstance(result, list):
            return self._send_stream(sim._edited_events(result), delay)
        return self._send_json(200, sim._edited(result), delay)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _send_json(self, status: int, payload: JSON, delay: float) -> None:
        indent = self.simulator.indent
        data = json.dumps(payload, indent=indent, separators=None if indent else (",", ":"))
        body = data.encode()
        if delay > 0:
            time.sleep(delay)
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        anthropic = urlsplit(self.path).path.endswith("/messages")  # each API's own header
        request_id = f"req_{next(self.simulator._ids):012d}"
        self.send_header("request-id" if anthropic else "x-request-id", request_id)
        if status >= 400:
            self.send_header("Retry-After-Ms", "1")  # SDKs that retry do so without backing off
        self.end_headers()
        self.wfile.write(body)

    def _send_stream(self, events: list[bytes], delay: float) -> None:
        self.send_response_only(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunks = [b"%x\r\n%s\r\n" % (len(event), event) for event in events]
        if delay <= 0:
            self.wfile.write(b"".join(chunks) + b"0\r\n\r\n")
            return
        self.wfile.flush()
        start = time.monotonic()
        for number, chunk in enumerate(chunks, 1):
            time.sleep(max(0.0, start + delay * number / len(chunks) - time.monotonic()))
            self.wfile.write(chunk)
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class Simulator:
    """A local OpenAI- and Anthropic-compatible server for tests, benchmarks and the demo.

    It serves chat/completions, completions, embeddings, responses and (Anthropic) messages,
    streamed or not, simulates prompt caching in ``usage``, and records every request in
    :attr:`requests`. Each answer carries a request id header (``x-request-id``, or
    ``request-id`` as Anthropic's API names it). :attr:`delay` and
    :attr:`indent` (indent JSON answers by this many spaces, as the OpenAI API does; ``None``
    for compact JSON) may be changed at any time. Use it as a context manager::

        with Simulator() as sim:
            client = openai.OpenAI(api_key="x", base_url=sim.base_url)
    """

    def __init__(self, *, delay: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        """Configure the server; nothing listens until :meth:`start`."""
        self.delay = delay
        self.indent: int | None = None
        self.requests: list[RecordedRequest] = []
        self._address = (host, port)
        self._lock = threading.Lock()
        self._failures = (0, 500)  # (requests still to fail, status)
        self._edits: tuple[int, Callable[[dict[str, Any]], Any] | None] = (0, None)
        self._stream_edits: tuple[int, Callable[[dict[str, Any]], Any] | None] = (0, None)
        self._ids = itertools.count(1)  # x-request-id numbers
        self._prefixes: set[tuple[str, str]] = set()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Return the OpenAI base URL, ``http://127.0.0.1:<port>/v1``."""
        return self.anthropic_base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Return the Anthropic base URL, ``http://127.0.0.1:<port>`` (the SDK adds ``/v1``)."""
        if not self._address[1]:
            raise RuntimeError("the simulator has not been started")
        return f"http://{self._address[0]}:{self._address[1]}"

    def start(self) -> Simulator:
        """Bind the socket and serve on a daemon thread; return ``self``."""
        if self._server is None:
            self._server = _Server(self._address, _Handler)
            self._server.simulator = self
            self._address = (self._address[0], self._server.server_port)
            serve = self._server.serve_forever
            self._thread = threading.Thread(
                target=serve, kwargs={"poll_interval": 0.05}, name="llmcache-simulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and cut open connections; do nothing if stopped."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        thread.join()

    def __enter__(self) -> Simulator:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    def count(self, path: str | None = None) -> int:
        """Return how many requests arrived, optionally only those for ``path``."""
        with self._lock:
            return sum(1 for request in self.requests if path is None or request.path == path)

    def reset(self) -> None:
        """Forget the recorded requests, cancel pending failures and edits, answer compact
        JSON again (prompt caches stay warm)."""
        with self._lock:
            self.requests.clear()
            self._failures = (0, 500)
            self._edits = (0, None)
            self._stream_edits = (0, None)
            self.indent = None

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` and an OpenAI-style error body.

        The body is ``{"error": {"message": "simulated failure", "type": "server_error",
        "code": null}}``; this replaces any pending failures (``fail_next(0)`` cancels them).
        The SDKs retry 408, 409, 429 and 5xx answers by default (``max_retries=2``): each retry
        is a request that consumes a failure and shows in :meth:`count`, so pass
        ``max_retries=0`` to see the error at once. Error answers carry ``retry-after-ms: 1``,
        so SDK retries do not back off.
        """
        with self._lock:
            self._failures = (max(0, n), status)

    def edit_next(self, change: Callable[[dict[str, Any]], Any], n: int = 1) -> None:
        """Pass the next ``n`` whole (not streamed) answers through ``change`` before sending.

        ``change`` gets the answer's JSON object and returns what to send instead: a way to
        play a server that answers off the API's specification. This replaces any pending
        edits (``n=0`` cancels them).
        """
        with self._lock:
            self._edits = (max(0, n), change)

    def edit_next_stream(self, change: Callable[[dict[str, Any]], Any], n: int = 1) -> None:
        """Pass each event of the next ``n`` streamed answers through ``change``.

        ``change`` gets one event's JSON data and returns what to send instead, as
        :meth:`edit_next` does for whole answers; ``n=0`` cancels pending edits.
        """
        with self._lock:
            self._stream_edits = (max(0, n), change)

    def _edited_events(self, events: list[bytes]) -> list[bytes]:
        """Return the SSE ``events`` as a pending :meth:`edit_next_stream` changes them."""
        with self._lock:
            remaining, change = self._stream_edits
            if remaining == 0 or change is None:
                return events
            self._stream_edits = (remaining - 1, change)
        edited = []
        for event in events:
            head, sep, data = event.rpartition(b"data: ")
            if not sep or data.strip() == b"[DONE]":
                edited.append(event)
                continue
            payload = json.dumps(change(json.loads(data)), separators=(",", ":"))
            edited.append(head + sep + payload.encode() + b"\n\n")
        return edited

    def _edited(self, payload: dict[str, Any]) -> Any:
        """Return ``payload`` as a pending :meth:`edit_next` changes it."""
        with self._lock:
            remaining, change = self._edits
            if remaining == 0 or change is None:
                return payload
            self._edits = (remaining - 1, change)
        return change(payload)

    def _arrive(self, request: RecordedRequest) -> int | None:
        """Record ``request``; return the status to fail it with, if a failure is pending."""
        with self._lock:
            self.requests.append(request)
            remaining, status = self._failures
            self._failures = (max(0, remaining - 1), status)
            return status if remaining > 0 else None

    def _seen(self, provider: str, identity: str) -> bool:
        """Remember a cacheable prompt prefix; return whether it had been seen before."""
        key = (provider, hashlib.sha256(identity.encode("utf-8")).hexdigest())
        with self._lock:
            seen = key in self._prefixes
            self._prefixes.add(key)
            return seen

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)
