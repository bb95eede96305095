"""Proxies that mirror the SDK's resource tree: ``client.chat.completions.create`` and kin.

Each proxy wraps one SDK resource, replaces ``create`` with the cached pipeline, and passes
every other attribute through untouched.
"""

from __future__ import annotations

from typing import Any

from .request import Endpoint

__all__ = ["CachedResource", "ResourceGroup"]


class CachedResource:
    """An SDK resource whose ``create`` goes through the cache."""

    def __init__(self, resource: Any, engine: Any, endpoint: Endpoint) -> None:
        self._resource = resource
        self._engine = engine
        self._endpoint = endpoint
        # the SDK's raw-response twin of create, whose JSON text a miss stores as it came
        self._raw = getattr(getattr(resource, "with_raw_response", None), "create", None)
        if endpoint == "embeddings":
            self.create = self._embed  # type: ignore[method-assign]

    def create(self, **kwargs: Any) -> Any:
        """Call the SDK's ``create`` through the cache; ``cache_*`` options are llmcache's."""
        return self._engine.call(self._endpoint, kwargs, self._resource.create, self._raw)

    def _embed(self, **kwargs: Any) -> Any:
        return self._engine.embed(kwargs, self._resource.create)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)

    def __repr__(self) -> str:
        return f"<cached {self._resource!r}>"


class ResourceGroup:
    """A namespace of the SDK (``client.chat``) whose cached children are proxies."""

    def __init__(self, group: Any, children: dict[str, CachedResource]) -> None:
        self._group = group
        self.__dict__.update(children)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._group, name)
