"""Proxies that mirror the SDK's resource tree: ``client.chat.completions.create`` and kin.

Each proxy wraps one SDK resource. ``create`` goes through the engine directly (the fast
path); the SDK helpers built on it (``parse``, ``stream``) and its ``with_raw_response`` /
``with_streaming_response`` forms go to the same resource of the *HTTP twin*: the wrapped
client rebuilt over a cache transport that shares this client's tiers and statistics, so
they are cached and counted too. Every other attribute passes through untouched.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

from llmcache._rules.options import KNOWN_OPTIONS, split_options
from llmcache._rules.prompt import mark_prefix
from llmcache.providers.base import Method

__all__ = ["ROUTED", "CachedResource", "ResourceGroup", "Routed"]

# what a cached resource's HTTP twin serves: the helpers and response forms of create
ROUTED = frozenset({"parse", "stream", "with_raw_response", "with_streaming_response"})
_HEADERS = {
    "cache_control": "Cache-Control",
    "cache_ttl": "llmcache-ttl",
    "cache_key": "llmcache-key",
    "cache_strategy": "llmcache-strategy",
    "cache_tier": "llmcache-tier",
    "cache_semantic": "llmcache-semantic",
}


def as_headers(kwargs: dict[str, Any], sdk_cache_control: bool, provider: str) -> dict[str, Any]:
    """Return a call's keywords with its ``cache_*`` options moved into ``extra_headers``
    (the HTTP-level cache's per-call control), checked as strictly as ``create`` checks them.

    :raises TypeError: an unknown ``cache_*`` keyword.
    :raises ValueError: a bad option value.
    """
    if not any(name.startswith("cache_") for name in kwargs):
        return kwargs
    params, options, _ = split_options(kwargs, sdk_cache_control=sdk_cache_control)
    headers = dict(params.get("extra_headers") or {})
    for option, header in _HEADERS.items():
        value = getattr(options, option[len("cache_") :])
        if option == "cache_strategy" and value == "tiered":
            continue
        if option == "cache_semantic":
            if value:
                continue
            value = "off"
        if value is None:
            continue
        if option == "cache_ttl":
            value = "forever" if math.isinf(value) else repr(value)
        headers[header] = str(value)
    if options.prompt:
        params = mark_prefix(provider, params)
    params["extra_headers"] = headers
    return params


class Routed:
    """An object of the HTTP twin whose methods take ``cache_*`` options like ``create``.

    :param target: the twin's object (a resource, or its raw/streaming form).
    :param sdk_cache_control: the SDK has a ``cache_control`` parameter of its own.
    :param provider: the provider's name, for ``cache_prompt``.
    """

    def __init__(self, target: Any, sdk_cache_control: bool, provider: str) -> None:
        self._target = target
        self._sdk_cache_control = sdk_cache_control
        self._provider = provider

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.ismethod(value) or inspect.isfunction(value):
            return self._method(value)
        if type(value).__module__.split(".", 1)[0] == type(self._target).__module__.split(".")[0]:
            return Routed(value, self._sdk_cache_control, self._provider)  # a sub-resource
        return value

    def _method(self, method: Callable[..., Any]) -> Callable[..., Any]:
        convert = functools.partial(
            as_headers, sdk_cache_control=self._sdk_cache_control, provider=self._provider
        )
        if inspect.iscoroutinefunction(inspect.unwrap(method)):

            @functools.wraps(method)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                return await method(*args, **convert(kwargs))

            return call_async

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **convert(kwargs))

        return call

    def __repr__(self) -> str:
        return f"<cached {self._target!r}>"


class CachedResource:
    """An SDK resource whose cached methods go through the cache.

    A cached method (``create``) takes the SDK method's keywords plus llmcache's ``cache_*``
    options; on an async client it is a coroutine function. It is the engine's own entry
    point bound to this resource: no frame of ours between the caller and the engine (the
    hit path).

    :param resource: the wrapped client's resource.
    :param engine: the engine the cached methods go through.
    :param methods: the provider's cached methods on this resource.
    :param twin: the HTTP twin's resource (``None`` where the client has no twin).
    """

    def __init__(self, resource: Any, engine: Any, methods: list[Method], twin: Any = None) -> None:
        self._resource = resource
        self._engine = engine
        self._twin = twin
        for method in methods:
            setattr(self, method.name, self._bind(method, methods))

    def _bind(self, method: Method, methods: list[Method]) -> Callable[..., Any]:
        engine, resource = self._engine, self._resource
        if method.endpoint == "embeddings":
            return functools.partial(engine.embed, getattr(resource, method.name))
        twins = [m for m in methods if m.endpoint == method.endpoint and m.stream != method.stream]
        if not method.stream and not twins:  # streaming is an argument of the method (create)
            # the SDK's raw-response twin, whose JSON text a miss stores as it came
            raw = getattr(getattr(resource, "with_raw_response", None), method.name, None)
            return functools.partial(
                engine.call, method.endpoint, getattr(resource, method.name), raw
            )
        # a method that always streams and its unstreamed twin: one upstream that picks
        plain, streamed = (twins[0], method) if method.stream else (method, twins[0])
        upstream = _Choose(getattr(resource, plain.name), getattr(resource, streamed.name))
        call = functools.partial(engine.call, method.endpoint, upstream, None)
        return functools.partial(call, stream=True) if method.stream else call

    def __getattr__(self, name: str) -> Any:
        if name in ROUTED and self._twin is not None:
            provider = self._engine.provider
            return Routed(self._twin, provider.sdk_cache_control, provider.name).__getattr__(name)
        return getattr(self._resource, name)

    def __repr__(self) -> str:
        return f"<cached {self._resource!r}>"


class _Choose:
    """The upstream of an endpoint whose SDK streams by method, not by argument: the engine
    marks a streamed call ``stream=True``, which this takes out to call the right method."""

    def __init__(self, plain: Callable[..., Any], streamed: Callable[..., Any]) -> None:
        self.plain = plain
        self.streamed = streamed

    def __call__(self, **params: Any) -> Any:
        if params.pop("stream", False):
            return self.streamed(**params)
        return self.plain(**params)


class ResourceGroup:
    """A namespace of the SDK (``client.chat``) whose cached children are proxies."""

    def __init__(self, group: Any, children: dict[str, CachedResource]) -> None:
        self._group = group
        self.__dict__.update(children)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._group, name)


assert set(_HEADERS) <= set(KNOWN_OPTIONS)
