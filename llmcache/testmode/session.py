"""Route every LLM API call of a running test through a recording.

While a test runs, the HTTP libraries' own transports (``HTTPTransport.handle_request``
and ``AsyncHTTPTransport.handle_async_request`` of ``httpx2`` and of ``httpx``, whichever
are installed) are patched: a call to a cached endpoint goes through a
:class:`~llmcache.http.CacheTransport` whose tier is the test module's recording, and the
cache sends its misses upstream through the transport that was asked. Everything else
passes through untouched.

Patching the transports rather than the SDK clients' constructors catches every client,
however and whenever it was made: clients frameworks build with their own ``http_client``
(LangChain, pydantic-ai, openai-agents), module-level clients made before the test, SDK
subclasses, ``with_options``/``copy`` and both HTTP libraries. A constructor patch misses
clients created at import time and any construction path it does not know.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from llmcache._engine.core import CacheCore
from llmcache._engine.embeddings import split_inputs
from llmcache._observe.events import CacheEvent
from llmcache._rules.canonical import SECRET_QUERY, request_of
from llmcache._rules.request import CacheRequest
from llmcache.hookspecs import hookimpl
from llmcache.http.transport import AsyncCacheTransport, CacheTransport
from llmcache.testmode.diff import nearest
from llmcache.testmode.explain import render_miss
from llmcache.testmode.store import RecordingStore, adopt

__all__ = ["NAMESPACE", "SECRET_QUERY", "Recording", "active", "install", "uninstall"]

NAMESPACE = "test"
_LIBRARIES = ("httpx2", "httpx")


class _Observer:
    """Hands the store the canonical request of every answer it is given."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    @hookimpl
    def llmcache_on_store(self, event: CacheEvent) -> None:
        request = event.request
        self.recording.store.note_request(event.key, self.recording.record_of(request))


@dataclass(eq=False)
class Recording:
    """The test mode of one running test: a recording store, a mode and the caches over it.

    :param store: the test module's recording.
    :param mode: ``"record"``, ``"replay"`` or ``"strict"``.
    :param test: the node id of the test.
    :param redact: argument names (and URL query parameters) whose values are never
        written; headers are never written at all.
    :ivar misses: in strict mode, the explanation of each request that had no recording.
    """

    store: RecordingStore
    mode: str
    test: str
    redact: frozenset[str] = frozenset()
    misses: list[str] = field(default_factory=list)
    _cores: dict[bool, CacheCore] = field(default_factory=dict)
    _transports: dict[Any, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        adopt(self.store)  # the tier the cache opens by URL is this very store
        self.store.begin(self.test, self.mode)

    def record_of(self, request: Any) -> dict[str, Any]:
        """Return a request as the recording holds it, secrets left out."""
        return request_of(request, self.redact)

    def core(self, is_async: bool) -> CacheCore:
        """Return the cache over the recording, for blocking or asyncio transports."""
        core = self._cores.get(is_async)
        if core is None:
            core = self._cores[is_async] = CacheCore(
                is_async=is_async,
                tiers=["recording://" + quote(str(self.store.path))],
                namespace=NAMESPACE,
                default_ttl=None,
                plugins=[_Observer(self)],
                fail_open=False,  # a store that fails must fail the test, not miss silently
            )
        return core

    def transport(
        self, upstream: Any, original: Callable[..., Any], library: str, is_async: bool
    ) -> Any:
        """Return the cache transport in front of ``upstream`` (made once per transport)."""
        made = self._transports.get(upstream)
        if made is None:
            inner = (_AsyncUpstream if is_async else _Upstream)(upstream, original)
            kind = AsyncCacheTransport if is_async else CacheTransport
            made = kind(inner, library=library, core=self.core(is_async))
            door = made._door  # reads a request as the cache does, for explanations
            if self.mode == "strict":
                inner.guard = lambda request: self.refuse(door, request)
            else:
                inner.guard = lambda request: self.note_inputs(door, request)
            self._transports[upstream] = made
        return made

    @staticmethod
    def _requests(door: Any, request: Any) -> list[Any] | None:
        """Return the cached calls an upstream request carries: the call itself, or for
        embeddings (cached per input) one call per input; ``None`` when it is no call of a
        cached endpoint."""
        call = door.read(request, request.content)
        if call is None or not hasattr(call, "request"):
            return None
        whole = call.request
        split = split_inputs(call.params.get("input")) if whole.endpoint == "embeddings" else None
        if split is None:
            return [whole]
        return [
            CacheRequest(
                whole.endpoint,
                {**call.params, "input": item},
                whole.options,
                whole.namespace,
                whole.provider,
            )
            for item in split[0]
        ]

    @staticmethod
    def _key(door: Any, request: CacheRequest) -> str | None:
        try:
            key: str = door.core.key_strategy.key(request)
        except Exception:  # an argument without a stable key: the call is not cached
            return None
        return key

    def note_inputs(self, door: Any, request: Any) -> None:
        """Keep the request of each input of a per-input embeddings call on its way upstream
        (the cache reports no request for them), so that its line says what it answers."""
        calls = self._requests(door, request)
        if calls is None or calls[0].endpoint != "embeddings":
            return None
        for one in calls:
            key = self._key(door, one)
            if key is not None:
                self.store.note_request(key, self.record_of(one))
        return None

    def refuse(self, door: Any, request: Any) -> Any:
        """In strict mode, answer a call the cache would send upstream with an explanation
        (and keep it to fail the test with); pass anything else through."""
        calls = self._requests(door, request)
        if calls is None:
            return None
        recorded = [
            (line.key, line.test, line.request)
            for line in self.store.lines()
            if line.request is not None
        ]
        messages = []
        for one in calls[:3]:  # an embeddings call explains its first missing inputs
            record = self.record_of(one)
            key = self._key(door, one) or "(none: the request cannot have a stable key)"
            found = nearest(record, recorded, limit=1, test=self.test)
            path = str(self.store.path)
            messages.append(render_miss(path, self.test, record, key, found, len(recorded)))
        message = "\n\n".join(messages)
        self.misses.append(message)
        body = {"type": "error", "error": {"type": "llmcache_no_recording", "message": message}}
        return door.lib.Response(
            504,
            headers=[(b"content-type", b"application/json"), (b"x-should-retry", b"false")],
            content=orjson.dumps(body),
        )


class _Upstream:
    """The transport a cache sends upstream through: the patched transport's own method.

    :ivar guard: called with each request before it goes upstream; a response it returns
        is the answer instead (strict mode's refusal), ``None`` lets the request go.
    """

    def __init__(self, transport: Any, original: Callable[..., Any]) -> None:
        self.transport = transport
        self.original = original
        self.guard: Callable[[Any], Any] | None = None

    def handle_request(self, request: Any) -> Any:
        if self.guard is not None:
            refused = self.guard(request)
            if refused is not None:
                return refused
        return self.original(self.transport, request)

    def close(self) -> None:
        """Leave the transport to its client, which closes it."""


class _AsyncUpstream(_Upstream):
    """The asyncio twin of :class:`_Upstream`."""

    async def handle_async_request(self, request: Any) -> Any:
        if self.guard is not None:
            refused = self.guard(request)
            if refused is not None:
                return refused
        return await self.original(self.transport, request)

    async def aclose(self) -> None:
        """Leave the transport to its client, which closes it."""


_active: Recording | None = None
_patched: list[tuple[type[Any], str, Any]] = []


def active() -> Recording | None:
    """Return the recording of the running test, or ``None`` outside the test mode."""
    return _active


def _sync_handler(original: Callable[..., Any], library: str) -> Callable[..., Any]:
    def handle_request(self: Any, request: Any) -> Any:
        recording = _active
        if recording is None:
            return original(self, request)
        return recording.transport(self, original, library, False).handle_request(request)

    handle_request.__wrapped__ = original  # type: ignore[attr-defined]
    return handle_request


def _async_handler(original: Callable[..., Any], library: str) -> Callable[..., Any]:
    async def handle_async_request(self: Any, request: Any) -> Any:
        recording = _active
        if recording is None:
            return await original(self, request)
        cache = recording.transport(self, original, library, True)
        return await cache.handle_async_request(request)

    handle_async_request.__wrapped__ = original  # type: ignore[attr-defined]
    return handle_async_request


def install(recording: Recording) -> None:
    """Route the LLM API calls made from now on through ``recording``."""
    global _active
    _active = recording
    if _patched:
        return
    for library in _LIBRARIES:
        try:
            lib = importlib.import_module(library)
        except ImportError:
            continue
        for cls, name, wrap in (
            (lib.HTTPTransport, "handle_request", _sync_handler),
            (lib.AsyncHTTPTransport, "handle_async_request", _async_handler),
        ):
            original = cls.__dict__[name]
            _patched.append((cls, name, original))
            setattr(cls, name, wrap(original, library))


def uninstall() -> None:
    """Give the HTTP libraries their own transports back."""
    global _active
    _active = None
    while _patched:
        cls, name, original = _patched.pop()
        setattr(cls, name, original)
