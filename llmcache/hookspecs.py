"""The extension points of llmcache, as pluggy hook specifications.

A plugin is any object or module with functions marked ``@llmcache.hookimpl`` whose names
are the hooks below. Registration hooks receive a ``register`` callback: the plugin says what
it adds and the core decides what to do with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

from llmcache._observe.events import CacheEvent

__all__ = [
    "PROJECT",
    "RegisterBackend",
    "RegisterEmbedder",
    "RegisterKeyStrategy",
    "RegisterProvider",
    "RegisterTTLPolicy",
    "hookimpl",
    "hookspec",
]

PROJECT = "llmcache"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class RegisterBackend(Protocol):
    """The ``register`` callback of :func:`llmcache_register_backends`."""

    def __call__(
        self,
        scheme: str,
        factory: Callable[..., Any],
        async_factory: Callable[..., Any] | None = None,
    ) -> None: ...


RegisterEmbedder = Callable[[str, Callable[..., Any]], None]
RegisterKeyStrategy = Callable[[str, Any], None]
RegisterProvider = Callable[[Any], None]
RegisterTTLPolicy = Callable[[str, Any], None]


@hookspec
def llmcache_register_backends(register: RegisterBackend) -> None:
    """Register cache backends by URL scheme.

    Called once, when the plugin manager first needs a backend. Call
    ``register("redis", factory, async_factory=None)`` for each scheme served, where
    ``factory(url: str, **options) -> CacheBackend``. An async client uses ``async_factory``
    when given, else it runs the sync backend in a worker thread.

    :param register: the callback that records a scheme.
    """


@hookspec
def llmcache_register_key_strategies(register: RegisterKeyStrategy) -> None:
    """Register key strategies by name, as ``register("name", strategy)``.

    Called once, when the plugin manager first resolves a strategy name. A strategy has
    ``key(request: CacheRequest) -> str``.

    :param register: the callback that records a strategy.
    """


@hookspec
def llmcache_register_ttl_policies(register: RegisterTTLPolicy) -> None:
    """Register TTL policies by name, as ``register("name", policy)``.

    Called once, when the plugin manager first resolves a policy name. A policy has
    ``ttl(request: CacheRequest) -> float | None | llmcache.NEVER``.

    :param register: the callback that records a policy.
    """


@hookspec
def llmcache_register_providers(register: RegisterProvider) -> None:
    """Register SDK families, as ``register(provider)`` with a
    :class:`llmcache.providers.Provider`.

    Called once, when the plugin manager first wraps a client. A provider says how to
    recognise its SDK's clients (their modules), which methods to cache and which endpoint
    each calls, how to read each endpoint's answers (an
    :class:`~llmcache.providers.EndpointAdapter`: usage, streaming assembly), and which
    HTTP paths the HTTP-level cache answers for it. A provider registered later wins over
    an earlier one for the same client.

    :param register: the callback that records a provider.
    """


@hookspec
def llmcache_register_embedders(register: RegisterEmbedder) -> None:
    """Register sentence embedders for semantic matching, as ``register("name", factory)``.

    Called once, when a cache with ``semantic=`` first resolves its embedder's name. The
    factory is called on first use with the keywords it declares among the option's
    ``embedder_options`` and ``client`` (the ``CachedClient``, or ``None``), and returns an
    object with ``name`` (a string that changes whenever its vectors would), ``dim`` and
    ``embed(texts) -> array (len(texts), dim)``; optionally ``async aembed(texts)``. It must
    not download anything.

    :param register: the callback that records an embedder factory.
    """


@hookspec
def llmcache_on_hit(event: CacheEvent) -> None:
    """Observe a call served from the cache (a coalesced call included).

    Called after the entry was read, before the response is returned. An observer that
    raises is logged and never breaks the request.

    :param event: the request, the tier that served it and the time the lookup took.
    """


@hookspec
def llmcache_on_miss(event: CacheEvent) -> None:
    """Observe a call that found no usable entry and went upstream.

    Called once the upstream answered. An observer that raises is logged and ignored.

    :param event: the request and the time the whole call took.
    """


@hookspec
def llmcache_on_store(event: CacheEvent) -> None:
    """Observe an entry written to a tier.

    Called once per tier written, after the write returned. An observer that raises is
    logged and ignored.

    :param event: the request, the tier written and the time the write took.
    """


@hookspec
def llmcache_on_error(event: CacheEvent) -> None:
    """Observe a tier failure or a corrupt entry.

    Called when a tier raised, timed out, or returned bytes that are not a valid entry.
    An observer that raises is logged and ignored.

    :param event: the request, the tier and ``event.error``.
    """
