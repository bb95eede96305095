"""HTTP transports that answer LLM API calls from the cache: :class:`CacheTransport` and
:class:`AsyncCacheTransport`, for ``httpx2`` (openai 3.x, anthropic 2.x) and ``httpx``.

A transport sees each request the SDK sends. Cached API calls (see
:mod:`llmcache.http.routing`) go through the same engine as ``CachedClient``; everything
else, and every call the cache sends upstream, goes to the wrapped transport.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import orjson

from llmcache._engine.call import Call
from llmcache._engine.core import CacheCore
from llmcache._engine.embeddings import EmbeddingCall
from llmcache._rules.options import Directives, parse_options
from llmcache._rules.request import CacheRequest
from llmcache.errors import CacheMiss, ConfigError
from llmcache.http.engine import AsyncHttpEngine, Passthrough, SyncHttpEngine, mark_response
from llmcache.http.routing import (
    CONTROL_HEADERS,
    IDENTITY_HEADERS,
    BadControlHeader,
    Route,
    control_options,
    header_of,
    route,
)
from llmcache.providers.base import Provider

__all__ = ["LIBRARIES", "AsyncCacheTransport", "CacheTransport", "load_library"]

LIBRARIES = ("httpx2", "httpx")
_DROPPED = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_CONTROL = frozenset(name.encode() for name in CONTROL_HEADERS)


def load_library(name: str | None = None) -> ModuleType:
    """Return the HTTP library module: ``name``, else the one the installed OpenAI (or
    Anthropic) SDK uses, else whichever of ``httpx2`` and ``httpx`` is installed.

    :raises ConfigError: ``name`` is not one of :data:`LIBRARIES`, or it is not installed.
    """
    if name is not None:
        if name not in LIBRARIES:
            raise ConfigError(f"unknown HTTP library {name!r}; known: {', '.join(LIBRARIES)}")
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"library={name!r} needs it installed: pip install {name}") from exc
    for sdk in ("openai", "anthropic"):
        try:
            base = importlib.import_module(f"{sdk}._base_client")
        except ImportError:
            continue
        for library in LIBRARIES:
            module = getattr(base, library, None)
            if isinstance(module, ModuleType):
                return module
    for library in LIBRARIES:
        try:
            return importlib.import_module(library)
        except ImportError:
            continue
    raise ConfigError("the HTTP-level cache needs httpx2 or httpx: pip install httpx2")


@dataclass(slots=True)
class _Call:
    """One cached API call, read from its request."""

    route: Route
    params: dict[str, Any]
    request: CacheRequest
    directives: Directives
    original: Any  # the request as the SDK sent it
    controlled: bool  # it carries control headers (taken out before it goes upstream)


def _error(lib: ModuleType, status: int, message: str, param: str | None = None) -> Any:
    """Return an error response in the OpenAI format (which Anthropic's SDK reads too)."""
    kind = "invalid_request_error" if status == 400 else "cache_miss"
    error = {"type": kind, "message": message, "param": param, "code": kind}
    body = orjson.dumps({"type": "error", "error": error})
    return lib.Response(status, headers=[(b"content-type", b"application/json")], content=body)


class _Door:
    """What both transports do: read a request into a call, and answer what is not one."""

    def __init__(self, lib: ModuleType, core: CacheCore, engine_type: type[Any]) -> None:
        self.lib = lib
        self.core = core
        self.planner = core.planner("")
        providers = [p for p in core.registry.providers() if p.routes]
        if not providers:
            raise ConfigError("the HTTP-level cache needs the openai or anthropic package")
        self.routes = sorted(
            ((suffix, endpoint) for p in providers for suffix, endpoint in p.routes),
            key=lambda route: -len(route[0]),  # /chat/completions before /completions
        )
        adapters = {e: a for p in providers for e, a in p.adapters.items()}
        self.engine = engine_type(
            lib,
            self.planner,
            Provider("http", adapters),
            core.store,
            core.stats,
            core.observers,
            core.prices,
            lock_ttl=core.lock_ttl,
        )
        if core.semantic is not None:
            core.semantic.attach(self.engine)

    def read(self, request: Any, body: bytes) -> _Call | Any | None:
        """Return the call a request is, an error response, or ``None`` to pass it through."""
        if request.method != "POST":
            return None
        control: list[tuple[str, str]] = []
        organization = project = ""
        for name, value in request.headers.raw:  # one pass, no decoding of the rest
            lower = name.lower()
            if lower in _CONTROL:
                control.append((lower.decode(), value.decode("latin-1")))
            elif lower == IDENTITY_HEADERS[0]:
                organization = value.decode("latin-1")
            elif lower == IDENTITY_HEADERS[1]:
                project = value.decode("latin-1")
        url = request.url
        where = route(self.routes, request.method, str(url), url.path, organization, project)
        if where is None or where.endpoint not in self.engine.provider.adapters:
            return None
        try:
            params = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(params, dict):
            return None
        try:
            options, directives = parse_options(control_options(control))
            cache_request = self.planner.request(
                where.endpoint, params, options, provider=where.identity
            )
        except BadControlHeader as exc:
            return _error(self.lib, 400, str(exc), exc.header)
        except (TypeError, ValueError) as exc:
            option = next((o for o in CONTROL_HEADERS.values() if o in str(exc)), "")
            header = header_of(option) if option else "llmcache-*"
            return _error(self.lib, 400, f"bad {header} header: {exc}", header)
        return _Call(where, params, cache_request, directives, request, bool(control))

    def decide(
        self, call: _Call, started: float, upstream: Callable[..., Any]
    ) -> Call | tuple[dict[str, Any], EmbeddingCall] | None:
        """Return how the engine serves a call: a planned call to serve, a per-input
        embeddings call, or ``None`` to send it upstream uncached (a bypass)."""
        if call.route.endpoint == "embeddings":
            prepared = EmbeddingCall.prepare_request(
                self.planner, call.params, call.request, call.directives
            )
            return None if prepared[1] is None else (prepared[0], prepared[1])
        params, plan = self.planner.plan_request(call.params, call.request, call.directives)
        if plan is None:
            return None
        adapter = self.engine.adapter(call.route.endpoint)
        stream = bool(params.get("stream"))
        return Call(plan, adapter, params, stream, started, upstream)

    def resend(self, call: _Call, params: dict[str, Any]) -> Any:
        """Return the upstream request for ``params``: the call's own request without its
        control headers, or its body changed by the engine (a background refresh asks
        without streaming)."""
        request = call.original
        stream = bool(params.get("stream"))
        same = params == call.params
        if same and not call.controlled and not stream:
            return request  # nothing to take out: send it as it came
        drop = _CONTROL | {b"content-length"} if not same else _CONTROL
        if stream:  # events are read as they pass: ask for them uncompressed
            drop = drop | {b"accept-encoding"}
        headers = [(n, v) for n, v in request.headers.raw if n.lower() not in drop]
        if stream:
            headers.append((b"accept-encoding", b"identity"))
        return self.lib.Request(
            request.method,
            request.url,
            headers=headers,
            content=request.content if same else orjson.dumps(params),
            extensions=request.extensions,
        )

    def copy(self, response: Any) -> Any:
        """Return a read response as a new one (an answer several callers share)."""
        headers = [(n, v) for n, v in response.headers.multi_items() if n.lower() not in _DROPPED]
        return self.lib.Response(
            response.status_code,
            headers=headers,
            content=response.content,
            extensions={"http_version": response.extensions.get("http_version", b"HTTP/1.1")},
        )

    def cache_miss(self, exc: CacheMiss) -> Any:
        """Return the answer to an ``only-if-cached`` miss: 504, as HTTP caches answer."""
        return mark_response(_error(self.lib, 504, str(exc)), "miss", "")

    def passed(self, exc: Passthrough, key: str) -> Any:
        """Return an upstream answer the cache did not store."""
        return mark_response(self.copy(exc.response), "miss", key)


def _json(response: Any) -> Any:
    """Return a read upstream answer's JSON object, or raise :class:`Passthrough`."""
    if response.status_code >= 300:
        raise Passthrough(response)
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise Passthrough(response) from None
    if not isinstance(data, dict):
        raise Passthrough(response)
    return data


class CacheTransport:
    """A blocking transport (``httpx2.BaseTransport`` or ``httpx.BaseTransport`` alike) that
    answers LLM API calls from the cache.

    :param transport: the transport to send upstream through (default: the library's
        ``HTTPTransport()``).
    :param library: ``"httpx2"`` or ``"httpx"`` (default: what the installed SDK uses).
    :param options: ``CachedClient``'s storage options (``tiers``, ``namespace``,
        ``default_ttl``, ``key_strategy``, ``ttl_policy``, ``plugins``, ``pricing``,
        ``fail_open``, ``signing_key``...).
    """

    def __init__(
        self,
        transport: Any = None,
        *,
        library: str | None = None,
        core: CacheCore | None = None,
        **options: Any,
    ) -> None:
        self.lib = load_library(library)
        self.transport = transport if transport is not None else self.lib.HTTPTransport()
        self._owns_core = core is None
        self.core = core if core is not None else CacheCore(is_async=False, **options)
        self._door = _Door(self.lib, self.core, SyncHttpEngine)

    def handle_request(self, request: Any) -> Any:
        """Answer a request: from the cache when it is a cached API call, else upstream."""
        door = self._door
        call = door.read(request, request.read())
        if call is None:
            return self.transport.handle_request(request)
        if not isinstance(call, _Call):
            return call
        engine = door.engine
        started = time.perf_counter()

        def upstream(**params: Any) -> Any:
            response = self.transport.handle_request(door.resend(call, params))
            if not params.get("stream"):
                response.read()
            return response

        try:
            decision = door.decide(call, started, upstream)
            if isinstance(decision, Call):
                return engine.serve(decision)
            if decision is not None:
                return engine.embed_prepared(decision, lambda **p: _json(upstream(**p)))
        except Passthrough as exc:
            return door.passed(exc, "")
        except CacheMiss as exc:
            return door.cache_miss(exc)
        engine.stats.bypass()
        forward = door.resend(call, call.params)
        return mark_response(self.transport.handle_request(forward), "bypass", "")

    def close(self) -> None:
        """Close the wrapped transport, and the cache's tiers when this transport made them."""
        self.transport.close()
        if self._owns_core and not self.core.closed:
            self.core.closed = True
            self._door.engine.close()

    def __enter__(self) -> CacheTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCacheTransport:
    """The asyncio twin of :class:`CacheTransport` (``AsyncBaseTransport`` alike)."""

    def __init__(
        self,
        transport: Any = None,
        *,
        library: str | None = None,
        core: CacheCore | None = None,
        **options: Any,
    ) -> None:
        self.lib = load_library(library)
        self.transport = transport if transport is not None else self.lib.AsyncHTTPTransport()
        self._owns_core = core is None
        self.core = core if core is not None else CacheCore(is_async=True, **options)
        self._door = _Door(self.lib, self.core, AsyncHttpEngine)

    async def handle_async_request(self, request: Any) -> Any:
        """Answer a request: from the cache when it is a cached API call, else upstream."""
        door = self._door
        call = door.read(request, await request.aread())
        if call is None:
            return await self.transport.handle_async_request(request)
        if not isinstance(call, _Call):
            return call
        engine = door.engine
        started = time.perf_counter()

        async def upstream(**params: Any) -> Any:
            response = await self.transport.handle_async_request(door.resend(call, params))
            if not params.get("stream"):
                await response.aread()
            return response

        async def upstream_json(**params: Any) -> Any:
            return _json(await upstream(**params))

        try:
            decision = door.decide(call, started, upstream)
            if isinstance(decision, Call):
                return await engine.serve(decision)
            if decision is not None:
                return await engine.embed_prepared(decision, upstream_json)
        except Passthrough as exc:
            return door.passed(exc, "")
        except CacheMiss as exc:
            return door.cache_miss(exc)
        engine.stats.bypass()
        response = await self.transport.handle_async_request(door.resend(call, call.params))
        return mark_response(response, "bypass", "")

    async def aclose(self) -> None:
        """Close the wrapped transport, and the cache's tiers when this transport made them."""
        await self.transport.aclose()
        if self._owns_core and not self.core.closed:
            self.core.closed = True
            await self._door.engine.close()

    async def __aenter__(self) -> AsyncCacheTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
