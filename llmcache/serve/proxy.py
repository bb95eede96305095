"""The proxy's API door: an ASGI app that hands each ``/v1/...`` request to the HTTP-level
cache's :class:`~llmcache.http.AsyncCacheTransport` and sends its answer back.

It adds only what a server needs in front of the transport: a body size limit, requests
checked before anything goes upstream (a cached endpoint takes a JSON object), the tenant's
transport under ``--isolate-by-key``, upstream failures as 502/504 in the provider's error
format, streams passed through event by event and abandoned (never stored) when the client
goes away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import orjson

from llmcache.serve.activity import Served
from llmcache.serve.tenants import Tenants, caller_key
from llmcache.serve.upstream import Target, error_body, target

__all__ = ["Proxy"]

log = logging.getLogger("llmcache.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# hop-by-hop headers (RFC 9110, 7.6.1) and those the upstream request computes itself;
# accept-encoding: answers come back uncompressed, so the cache and the client read them as is
_NOT_FORWARDED = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"accept-encoding",
    }
)
_NOT_RETURNED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"content-encoding",
        b"server",
        b"date",
    }
)
_JSON = [(b"content-type", b"application/json")]
_OUTCOME = frozenset({b"llmcache-status", b"llmcache-tier", b"age", b"content-type"})


class _TooLarge(Exception):
    """The request body is over the limit."""


class _Gone(Exception):
    """The client disconnected before its request body was whole."""


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        piece = message.get("body", b"")
        size += len(piece)
        if size > limit:
            raise _TooLarge
        chunks.append(piece)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Proxy:
    """An ASGI app that answers the API paths through the HTTP-level cache.

    :param lib: the HTTP library (``httpx2`` or ``httpx``) of the transports.
    :param transport: the cache transport of the configured namespace.
    :param tenants: the tenants' transports (``--isolate-by-key``), or ``None``.
    :param openai_base: the OpenAI upstream base URL.
    :param anthropic_base: the Anthropic upstream base URL.
    :param max_body_bytes: the largest request body accepted.
    :param record: called with each answered API call.
    :param timeout: seconds an upstream answer may take.
    """

    def __init__(
        self,
        lib: Any,
        transport: Any,
        tenants: Tenants | None,
        *,
        openai_base: str,
        anthropic_base: str,
        max_body_bytes: int,
        record: Callable[[Served], None],
        timeout: float,
    ) -> None:
        self.lib = lib
        self.transport = transport
        self.tenants = tenants
        self.openai_base = openai_base
        self.anthropic_base = anthropic_base
        self.max_body_bytes = max_body_bytes
        self.record = record
        # parsed upstream URLs: a Request built from one took ~12 us against ~30 us from the
        # URL's text (timeit, httpx2 2.17), a tenth of a memory hit's time in the proxy
        self._urls: dict[str, Any] = {}
        self.extensions = {
            "timeout": {"connect": 10.0, "read": timeout, "write": 60.0, "pool": timeout}
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ``/v1/...`` request."""
        started = time.perf_counter()
        arrived = time.time()
        path: str = scope["path"]
        where = target(
            path, scope["query_string"].decode("latin-1"), self.openai_base, self.anthropic_base
        )
        assert where is not None  # the app routes only /v1/... here
        method: str = scope["method"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        cached = where.cached and method == "POST"
        declared = next((v for n, v in headers if n == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await self._refuse(send, where, 413, self._too_large(), path, arrived, started)
        try:
            body = await _read_body(receive, self.max_body_bytes)
        except _TooLarge:
            return await self._refuse(send, where, 413, self._too_large(), path, arrived, started)
        except _Gone:
            return  # nobody is left to answer
        model = ""
        if cached:
            problem = self._check(headers, body)
            if isinstance(problem, tuple):
                status, message = problem
                return await self._refuse(send, where, status, message, path, arrived, started)
            model = problem
        transport = self.transport
        if self.tenants is not None:
            transport = self.tenants.transport(caller_key(headers))
        forwarded = [(n, v) for n, v in headers if n not in _NOT_FORWARDED]
        url = self._urls.get(where.url)
        if url is None:
            url = self.lib.URL(where.url)
            if len(self._urls) < 1024:  # the API paths; a query string makes a URL of its own
                self._urls[where.url] = url
        request = self.lib.Request(
            method, url, headers=forwarded, content=body, extensions=self.extensions
        )
        lib = self.lib
        try:
            response = await transport.handle_async_request(request)
        except lib.TimeoutException as exc:
            log.warning("upstream timed out on %s: %s", path, type(exc).__name__)
            message = f"the upstream did not answer in time ({type(exc).__name__})"
            return await self._refuse(send, where, 504, message, path, arrived, started, cached)
        except lib.TransportError as exc:
            log.warning("upstream unreachable on %s: %s", path, type(exc).__name__)
            message = f"the upstream cannot be reached ({type(exc).__name__}: {exc})"
            return await self._refuse(send, where, 502, message, path, arrived, started, cached)
        await self._answer(response, send, receive, where, model, path, arrived, started)

    def _too_large(self) -> str:
        return f"the request body is larger than the proxy's limit of {self.max_body_bytes} bytes"

    @staticmethod
    def _check(headers: list[tuple[bytes, bytes]], body: bytes) -> str | tuple[int, str]:
        """Return the model of a cached call's JSON body, or the status and message that
        refuse it."""
        kind = next((v for n, v in headers if n == b"content-type"), b"")
        if not kind.split(b";", 1)[0].strip().lower().endswith(b"json"):
            shown = kind.decode("latin-1") or "none"
            return 415, f"the content type must be application/json, not {shown!r}"
        try:
            params = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return 400, f"the request body is not valid JSON: {exc}"
        if not isinstance(params, dict):
            return 400, f"the request body must be a JSON object, not {type(params).__name__}"
        model = params.get("model")
        return model[:200] if isinstance(model, str) else ""  # callers choose it: bounded

    async def _refuse(
        self,
        send: Send,
        where: Target,
        status: int,
        message: str,
        path: str,
        arrived: float,
        started: float,
        counted: bool = True,
    ) -> None:
        """Answer with an error of the proxy's own, in the provider's format (counted as an
        API call's outcome unless ``counted`` is false)."""
        body = error_body(where.api, status, message)
        headers = [*_JSON, (b"content-length", b"%d" % len(body))]
        if status == 502 or status == 504:
            headers.append((b"llmcache-status", b"miss"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if counted and where.cached:
            latency = (time.perf_counter() - started) * 1000
            self.record(Served(arrived, path, "", status, "error", "", None, latency, False))

    async def _answer(
        self,
        response: Any,
        send: Send,
        receive: Receive,
        where: Target,
        model: str,
        path: str,
        arrived: float,
        started: float,
    ) -> None:
        """Send the transport's answer: in one piece when it was read, else as a stream."""
        out: list[tuple[bytes, bytes]] = []
        outcome: dict[bytes, bytes] = {}
        for name, value in response.headers.raw:  # one pass: httpx2's mapping reads cost more
            lower = name.lower()
            if lower not in _NOT_RETURNED:
                out.append((name, value))
                if lower in _OUTCOME:
                    outcome[lower] = value
        try:
            content: bytes | None = response.content
        except self.lib.ResponseNotRead:
            content = None
        status = response.status_code
        if where.cached:
            self._record(outcome, model, path, status, arrived, started)
        if content is not None:
            out.append((b"content-length", b"%d" % len(content)))
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": content})
            return
        await self._stream(response, out, send, receive)

    async def _stream(
        self, response: Any, headers: list[tuple[bytes, bytes]], send: Send, receive: Receive
    ) -> None:
        """Pass a stream through as it comes; stop reading upstream when the client leaves
        (the cache stores a stream only once it ran to its end)."""
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            try:
                start = {"type": "http.response.start", "status": response.status_code}
                await send({**start, "headers": headers})
                async for piece in response.aiter_bytes():
                    if piece:
                        await send({"type": "http.response.body", "body": piece, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            except OSError:  # the client went away while we wrote
                pass
            except self.lib.TransportError as exc:  # the upstream broke off mid-stream
                # the status is sent already: end the body; an unfinished stream is never stored
                log.warning("upstream stream broke off: %s", type(exc).__name__)
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
                group.cancel_scope.cancel()

    def _record(
        self,
        outcome: dict[bytes, bytes],
        model: str,
        path: str,
        status: int,
        arrived: float,
        started: float,
    ) -> None:
        latency = (time.perf_counter() - started) * 1000
        age = outcome.get(b"age")
        served = Served(
            arrived,
            path,
            model,
            status,
            (outcome.get(b"llmcache-status") or (b"error" if status >= 400 else b"miss")).decode(),
            outcome.get(b"llmcache-tier", b"").decode(),
            int(age) if age is not None and age.isdigit() else None,
            round(latency, 3),
            outcome.get(b"content-type", b"").startswith(b"text/event-stream"),
        )
        self.record(served)
