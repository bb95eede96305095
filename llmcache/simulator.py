"""Serve fake OpenAI and Anthropic endpoints on loopback for tests, benchmarks and the demo.

Every text answer starts with ``[<request_digest(body)>]``, so a test can tie each answer to its
request. Tokens are whitespace-separated words, plus 4 per message in chat formats.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import math
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, cast
from urllib.parse import urlsplit

__all__ = ["RecordedRequest", "Simulator", "request_digest"]

JSON = dict[str, Any]
Result = JSON | list[bytes]  # a JSON answer, or the SSE events of a streamed answer

_TRANSPORT_KEYS = "stream stream_options timeout user metadata prompt_cache_key safety_identifier"
_DIGEST_EXCLUDED = frozenset(_TRANSPORT_KEYS.split())  # keys that never change an answer
_PREFIX_ROLES = ("system", "developer")
_OVERHEAD = 4  # tokens added per message
_DONE = b"data: [DONE]\n\n"


def request_digest(body: dict[str, Any]) -> str:
    """Return the 12-hex-digit digest the simulator embeds in its answer to ``body``.

    It hashes the canonical JSON of the body without stream, stream_options, timeout, user,
    metadata, prompt_cache_key and safety_identifier.
    """
    kept = {key: value for key, value in body.items() if key not in _DIGEST_EXCLUDED}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class RecordedRequest:
    """Describe one request the simulator received (header names are lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    """Return the text of a message content: a string or a list of parts carrying ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return " ".join(text for text in texts if isinstance(text, str))
    return ""


def _dicts(value: Any) -> list[JSON]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _message_tokens(messages: list[JSON]) -> int:
    """Count the words of every message's content (or tool output) plus the overhead."""
    return sum(_words(_text_of(m.get("content", m.get("output")))) + _OVERHEAD for m in messages)


def _last_user_text(messages: list[JSON]) -> str:
    users = [m.get("content") for m in messages if m.get("role") == "user"]
    return _text_of(users[-1]) if users else ""


def _answer(digest: str, prompt: str, variant: int = 0) -> str:
    """Build the deterministic answer: the digest, then a sentence echoing the prompt."""
    snippet = " ".join(prompt.split()[:12])
    sentence = f"Simulated reply to: {snippet}" if snippet else "Simulated reply."
    return f"[{digest}] {sentence}" + (f" (variant {variant + 1})" if variant else "")


def _truncate(text: str, limit: Any) -> tuple[str, bool]:
    """Cut ``text`` to ``limit`` words (at least one); report whether it was cut."""
    words = text.split(" ")
    if not isinstance(limit, int) or isinstance(limit, bool) or len(words) <= max(1, limit):
        return text, False
    return " ".join(words[: max(1, limit)]), True


def _pieces(text: str) -> list[str]:
    """Split ``text`` into one piece per word whose concatenation is exactly ``text``."""
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


def _forced_tool(tools: Any, choice: Any) -> str | None:
    """Return the tool a request forces (OpenAI chat or Anthropic shapes), if any."""
    names = [t.get("name") or (t.get("function") or {}).get("name") for t in _dicts(tools)]
    if isinstance(choice, dict):
        named = choice.get("name") or (choice.get("function") or {}).get("name")
        if isinstance(named, str):
            return named
        choice = choice.get("type")
    return str(names[0]) if choice in ("required", "any") and names else None


def _inputs(value: Any) -> list[tuple[Any, str, int]]:
    """Split a prompt or embeddings input (text, tokens or lists of them) into entries."""
    if isinstance(value, str):
        return [(value, value, _words(value))]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [(value, "", len(value))]
    if isinstance(value, list):
        return [entry for element in value for entry in _inputs(element)]
    return []


def _vector(item: Any, dimensions: int) -> list[float]:
    """Derive a unit vector of ``dimensions`` floats in [-1, 1] from the sha256 of ``item``."""
    seed = json.dumps(item, sort_keys=True).encode("utf-8")
    blocks = (dimensions * 4 + 31) // 32
    raw = b"".join(hashlib.sha256(seed + i.to_bytes(4, "little")).digest() for i in range(blocks))
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dimensions}I", raw[: dimensions * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _error(message: str, kind: str, code: str | None = None) -> JSON:
    return {"error": {"message": message, "type": kind, "code": code}}


def _envelope(prefix: str, obj: str, body: JSON) -> JSON:
    """Return the id/object/created/model fields shared by chat and completion answers."""
    envelope = {"id": prefix + uuid.uuid4().hex, "object": obj, "created": int(time.time())}
    return envelope | {"model": body.get("model") or "sim-model", "system_fingerprint": "fp_sim"}


def _usage(prompt: int, completion: int, cached: int | None = None) -> JSON:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    return usage if cached is None else usage | {"prompt_tokens_details": {"cached_tokens": cached}}


def _openai_cache(sim: Simulator, body: JSON, messages: list[JSON]) -> tuple[int, int]:
    """Return ``(cached, written)`` prompt tokens: the prefix is read if seen before, else written.

    The prefix is the system/developer messages plus the tools (which count to its identity);
    it is remembered per prompt_cache_key.
    """
    prefix = [m for m in messages if m.get("role") in _PREFIX_ROLES]
    if not prefix and not body.get("tools"):
        return 0, 0
    identity = json.dumps([body.get("prompt_cache_key"), prefix, body.get("tools")], sort_keys=True)
    tokens = _message_tokens(prefix)
    return (tokens, 0) if sim._seen("openai", identity) else (0, tokens)


def _chat(sim: Simulator, body: JSON) -> Result:
    messages = _dicts(body.get("messages"))
    digest, prompt = request_digest(body), _last_user_text(messages)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    tool = _forced_tool(body.get("tools"), body.get("tool_choice"))
    choices: list[JSON] = []
    for index in range(max(1, int(body.get("n") or 1))):
        message: JSON = {"role": "assistant", "content": None, "refusal": None}
        if tool is not None:
            call = {"id": f"call_{digest}{index}", "type": "function"}
            message["tool_calls"] = [call | {"function": {"name": tool, "arguments": "{}"}}]
            finish = "tool_calls"
        else:
            text, cut = _truncate(_answer(digest, prompt, index), limit)
            message["content"], finish = text, "length" if cut else "stop"
        choices.append({"index": index, "message": message, "finish_reason": finish})
    completion = sum(_words(c["message"]["content"] or "{}") for c in choices)
    cached, _ = _openai_cache(sim, body, messages)
    usage = _usage(_message_tokens(messages), completion, cached)
    if not body.get("stream"):
        envelope = _envelope("chatcmpl-", "chat.completion", body)
        return envelope | {"choices": [c | {"logprobs": None} for c in choices], "usage": usage}
    base = _envelope("chatcmpl-", "chat.completion.chunk", body)

    def chunk(index: int, delta: JSON, finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse(base | {"choices": [choice]})

    events: list[bytes] = []
    for choice in choices:
        index, message = choice["index"], choice["message"]
        events.append(chunk(index, {"role": "assistant", "content": ""}))
        if "tool_calls" in message:
            events.append(chunk(index, {"tool_calls": [{"index": 0} | message["tool_calls"][0]]}))
        else:
            events += [chunk(index, {"content": piece}) for piece in _pieces(message["content"])]
        events.append(chunk(index, {}, choice["finish_reason"]))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(_sse(base | {"choices": [], "usage": usage}))
    return [*events, _DONE]


def _completions(sim: Simulator, body: JSON) -> Result:
    prompts = _inputs(body.get("prompt", "")) or [("", "", 0)]
    digest, n = request_digest(body), max(1, int(body.get("n") or 1))
    choices: list[JSON] = []
    for number, (_, prompt, _) in enumerate(prompts):
        for variant in range(n):
            text, cut = _truncate(_answer(digest, prompt, variant), body.get("max_tokens"))
            choice: JSON = {"text": text, "index": number * n + variant, "logprobs": None}
            choices.append(choice | {"finish_reason": "length" if cut else "stop"})
    completion = sum(_words(choice["text"]) for choice in choices)
    usage = _usage(sum(tokens for _, _, tokens in prompts), completion)
    base = _envelope("cmpl-", "text_completion", body)
    if not body.get("stream"):
        return base | {"choices": choices, "usage": usage}
    events: list[bytes] = []
    for choice in choices:
        pieces = [*_pieces(choice["text"]), ""]
        for number, piece in enumerate(pieces):
            finish = choice["finish_reason"] if number == len(pieces) - 1 else None
            part = {"text": piece, "index": choice["index"], "logprobs": None}
            events.append(_sse(base | {"choices": [part | {"finish_reason": finish}]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(_sse(base | {"choices": [], "usage": usage}))
    return [*events, _DONE]


def _embeddings(sim: Simulator, body: JSON) -> Result:
    dimensions = int(body.get("dimensions") or 8)
    data: list[JSON] = []
    tokens = 0
    for index, (item, _, count) in enumerate(_inputs(body.get("input", ""))):
        vector: Any = _vector(item, dimensions)
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens += count
    model = str(body.get("model") or "sim-embedding")
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def _responses(sim: Simulator, body: JSON) -> Result:
    raw, instructions = body.get("input", ""), body.get("instructions")
    messages = _dicts([{"role": "user", "content": raw}] if isinstance(raw, str) else raw)
    if isinstance(instructions, str):
        messages.insert(0, {"role": "system", "content": instructions})
    limit, rid = body.get("max_output_tokens"), uuid.uuid4().hex
    text, cut = _truncate(_answer(request_digest(body), _last_user_text(messages)), limit)
    part: JSON = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    item: JSON = {"type": "message", "id": f"msg_{rid}", "status": "completed", "role": "assistant"}
    item["content"] = [part]
    tokens_in, tokens_out = _message_tokens(messages), _words(text)
    cached, written = _openai_cache(sim, body, messages)
    status = "incomplete" if cut else "completed"
    details = {"cached_tokens": cached, "cache_write_tokens": written}
    usage = {"input_tokens": tokens_in, "input_tokens_details": details}
    usage |= {"output_tokens": tokens_out, "output_tokens_details": {"reasoning_tokens": 0}}
    response: JSON = {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": instructions,
        "max_output_tokens": limit,
        "metadata": body.get("metadata") or {},
        "model": body.get("model") or "sim-model",
        "output": [item],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "usage": usage | {"total_tokens": tokens_in + tokens_out},
    }
    if not body.get("stream"):
        return response
    sequence = iter(range(1 << 30))

    def event(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(sequence), **fields}, kind)

    pending = response | {"status": "in_progress", "output": [], "usage": None}
    pending["incomplete_details"] = None
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    added = item | {"status": "in_progress", "content": []}
    return [
        event("response.created", response=pending),
        event("response.in_progress", response=pending),
        event("response.output_item.added", output_index=0, item=added),
        event("response.content_part.added", **at, part=part | {"text": ""}),
        *(event("response.output_text.delta", **at, delta=p, logprobs=[]) for p in _pieces(text)),
        event("response.output_text.done", **at, text=text, logprobs=[]),
        event("response.content_part.done", **at, part=part),
        event("response.output_item.done", output_index=0, item=item),
        event(f"response.{status}", response=response),
    ]


def _anthropic_units(body: JSON) -> list[tuple[Any, int, bool]]:
    """Flatten tools, system and messages into ``(identity, tokens, has_cache_control)`` units.

    A tool counts the words of its JSON, a block its words (+4 if it opens a message).
    """
    units: list[tuple[Any, int, bool]] = []

    def add(owner: Any, block: JSON, tokens: int) -> None:
        plain = {key: value for key, value in block.items() if key != "cache_control"}
        tokens += _words(json.dumps(plain)) if owner == "tool" else _words(_text_of([block]))
        units.append(([owner, plain], tokens, "cache_control" in block))

    for tool in _dicts(body.get("tools")):
        add("tool", tool, 0)
    system = body.get("system")
    system = [{"type": "text", "text": system}] if isinstance(system, str) else system
    for number, block in enumerate(_dicts(system)):
        add("system", block, _OVERHEAD if number == 0 else 0)
    for message in _dicts(body.get("messages")):
        content = message.get("content")
        parts = _dicts([{"type": "text", "text": content}] if isinstance(content, str) else content)
        for number, part in enumerate(parts or [{"type": "text", "text": ""}]):
            add(message.get("role"), part, _OVERHEAD if number == 0 else 0)
    return units


def _messages(sim: Simulator, body: JSON) -> Result:
    units = _anthropic_units(body)
    marked = [number for number, (_, _, flagged) in enumerate(units) if flagged]
    prefix = units[: marked[-1] + 1] if marked else []
    prefix_tokens = sum(tokens for _, tokens, _ in prefix)
    identity = json.dumps([unit for unit, _, _ in prefix], sort_keys=True)
    seen = bool(prefix) and sim._seen("anthropic", identity)
    messages = _dicts(body.get("messages"))
    tool = _forced_tool(body.get("tools"), body.get("tool_choice"))
    block: JSON = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex}", "name": tool, "input": {}}
    stop_reason, output_tokens, text = "tool_use", 1, ""
    if tool is None:
        answer = _answer(request_digest(body), _last_user_text(messages))
        text, cut = _truncate(answer, body.get("max_tokens"))
        block = {"type": "text", "text": text}
        stop_reason, output_tokens = ("max_tokens" if cut else "end_turn"), _words(text)
    total = sum(tokens for _, tokens, _ in units)
    created, read = (0, prefix_tokens) if seen else (prefix_tokens, 0)
    usage = {"input_tokens": total - prefix_tokens, "output_tokens": output_tokens}
    usage |= {"cache_creation_input_tokens": created, "cache_read_input_tokens": read}
    model = body.get("model") or "sim-claude"
    message: JSON = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant"}
    message |= {"model": model, "content": [block], "stop_sequence": None}
    if not body.get("stream"):
        return message | {"stop_reason": stop_reason, "usage": usage}

    def event(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, **fields}, kind)

    start = message | {"content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}}
    opening, deltas = block, [{"type": "input_json_delta", "partial_json": "{}"}]
    if tool is None:
        opening = block | {"text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(text)]
    final = {"stop_reason": stop_reason, "stop_sequence": None}
    return [
        event("message_start", message=start),
        event("content_block_start", index=0, content_block=opening),
        event("ping"),
        *(event("content_block_delta", index=0, delta=delta) for delta in deltas),
        event("content_block_stop", index=0),
        event("message_delta", delta=final, usage=usage),
        event("message_stop"),
    ]


_ENDPOINTS: dict[str, Callable[[Simulator, JSON], Result]] = {
    "/v1/chat/completions": _chat,
    "/v1/completions": _completions,
    "/v1/embeddings": _embeddings,
    "/v1/responses": _responses,
    "/v1/messages": _messages,
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
        endpoint = _ENDPOINTS.get(path) if self.command == "POST" else None
        if failure is not None:
            return self._send_json(failure, _error("simulated failure", "server_error"), delay)
        if endpoint is None:
            error = _error(f"Unknown request URL: {self.command} {path}.", "invalid_request_error")
            return self._send_json(404, error, delay)
        if not isinstance(body, dict):
            message = "The request body is not a JSON object."
            return self._send_json(400, _error(message, "invalid_request_error"), delay)
        try:
            result = endpoint(sim, body)
        except Exception as exc:  # a simulator bug: report it to the client, not to stderr
            return self._send_json(500, _error(f"simulator error: {exc!r}", "server_error"), delay)
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
