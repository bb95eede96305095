"""Register ``memcached://`` with llmcache (entry point ``memcached`` in group ``llmcache``).

Loading this module needs no driver: pymemcache is imported when a URL is first used.
"""

from __future__ import annotations

from collections.abc import Callable

from llmcache import hookimpl

from .async_backend import async_from_url
from .backend import from_url

__all__ = ["llmcache_register_backends"]


@hookimpl
def llmcache_register_backends(register: Callable[..., None]) -> None:
    """Serve ``memcached://`` (one server, or a pool of several)."""
    register("memcached", from_url, async_factory=async_from_url)
