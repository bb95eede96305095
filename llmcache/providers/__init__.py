"""SDK families llmcache wraps, and how it recognises a client."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..errors import ConfigError
from .base import EndpointAdapter, Provider

__all__ = ["EndpointAdapter", "Provider", "detect", "identity", "is_async_client"]

_ENDPOINT_PATHS = {
    "chat.completions": ("chat", "completions", "create"),
    "completions": ("completions", "create"),
    "embeddings": ("embeddings", "create"),
    "responses": ("responses", "create"),
    "messages": ("messages", "create"),
}


def _family(client: Any) -> str:
    return type(client).__module__.split(".", 1)[0]


def detect(client: Any) -> Provider:
    """Return the provider whose SDK made ``client`` (OpenAI-compatible unless Anthropic).

    :raises ConfigError: the SDK the provider needs is not installed.
    """
    module = "anthropic" if _family(client) == "anthropic" else "openai"
    try:
        adapters = importlib.import_module(f"{__name__}.{module}")
    except ImportError as exc:
        raise ConfigError(
            f"wrapping a {type(client).__name__} needs the {module!r} package: pip install {module}"
        ) from exc
    return adapters.ANTHROPIC if module == "anthropic" else adapters.OPENAI  # type: ignore[no-any-return]


def endpoint_method(client: Any, endpoint: str) -> Any:
    """Return the client's bound ``create`` method for an endpoint, or ``None``."""
    target = client
    for part in _ENDPOINT_PATHS[endpoint]:
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


def is_async_client(client: Any) -> bool:
    """Tell whether the client's cached methods are coroutine functions."""
    for endpoint in _ENDPOINT_PATHS:
        method = endpoint_method(client, endpoint)
        if method is not None:
            # the SDKs decorate create(); look through functools.wraps layers
            return inspect.iscoroutinefunction(inspect.unwrap(method)) or type(
                client
            ).__name__.startswith("Async")
    raise ConfigError(
        f"{type(client).__name__} has none of the methods llmcache caches "
        f"({', '.join('.'.join(p) for p in _ENDPOINT_PATHS.values())})"
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
