"""SDK families llmcache wraps: how it recognises a client, and the built-in providers.

Providers are plugins (``llmcache_register_providers``); OpenAI, Anthropic and google-genai
register through :mod:`llmcache.providers.builtin` like any other.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from llmcache.errors import ConfigError
from llmcache.providers.base import EndpointAdapter, Method, Provider

__all__ = ["EndpointAdapter", "Method", "Provider", "detect", "identity", "is_async_client"]


def detect(client: Any, providers: Sequence[Provider]) -> Provider:
    """Return the provider of ``client``: the last registered that recognises its class, else
    a fallback provider (OpenAI-compatible) whose methods the client has.

    :raises ConfigError: no provider fits; the message names the known ones.
    """
    for provider in reversed(providers):
        if provider.recognises(client):
            return provider
    for provider in reversed(providers):
        if provider.fallback and any(provider.resource(client, m) for m in provider.methods):
            return provider
    known = ", ".join(p.name for p in providers) or "none (install openai or anthropic)"
    raise ConfigError(
        f"no llmcache provider recognises {type(client).__module__}.{type(client).__name__}; "
        f"known providers: {known}"
    )


def is_async_client(client: Any, provider: Provider) -> bool:
    """Tell whether the client's cached methods are coroutine functions.

    :raises ConfigError: the client has none of the provider's cached methods.
    """
    for method in provider.methods:
        resource = provider.resource(client, method)
        if resource is not None:
            found = getattr(resource, method.name)
            # the SDKs decorate their methods; look through functools.wraps layers
            return inspect.iscoroutinefunction(inspect.unwrap(found)) or type(
                client
            ).__name__.startswith("Async")
    raise ConfigError(
        f"{type(client).__name__} has none of the methods llmcache caches for "
        f"{provider.name} ({', '.join('.'.join((*m.path, m.name)) for m in provider.methods)})"
    )


def identity(client: Any) -> str:
    """Return what tells two upstreams apart in keys: base URL, organization, project.

    API keys are deliberately left out: they never reach a key or an entry. The base URL
    goes in without a trailing slash, as the HTTP-level cache sees it in request URLs.
    """
    parts = [str(getattr(client, "base_url", "") or "").rstrip("/")]
    for name in ("organization", "project"):
        value = getattr(client, name, None)
        parts.append(value if isinstance(value, str) else "")
    return "|".join(parts)
