"""What the core knows about one call: the request, its cache options and the NEVER marker."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "NEVER",
    "CacheOptions",
    "CacheRequest",
    "Endpoint",
    "Never",
    "Strategy",
]

Endpoint = str
"""An endpoint's name: ``"chat.completions"``, ``"completions"``, ``"embeddings"``,
``"responses"``, ``"messages"``, or one a provider plugin adds (``"generate_content"``)."""
Strategy = Literal["local", "distributed", "tiered"]


class Never(enum.Enum):
    """Type of :data:`NEVER`: a TTL policy's answer for "bypass the cache entirely"."""

    NEVER = "NEVER"

    def __repr__(self) -> str:
        return "llmcache.NEVER"


NEVER: Final = Never.NEVER
"""A TTL policy returns this to bypass the cache: no read and no write."""


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """The ``cache_*`` keywords of one call, parsed; none of them goes upstream.

    :param control: the ``cache_control`` directive string, as given.
    :param ttl: ``cache_ttl`` in seconds; ``None`` when not given, ``float('inf')`` for forever.
    :param key: ``cache_key``, the caller's scope for the entry.
    :param prompt: ``cache_prompt``: mark the stable prompt prefix for the provider's cache.
    :param strategy: ``cache_strategy``: which tiers to use.
    :param tier: ``cache_tier``: write into the first N tiers only.
    :param semantic: ``cache_semantic``: ``False`` turns semantic matching off for the call.
    """

    control: str | None = None
    ttl: float | None = None
    key: str | None = None
    prompt: bool = False
    strategy: Strategy = "tiered"
    tier: int | None = None
    semantic: bool = True


def _frozen(params: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(params))


@dataclass(frozen=True, slots=True)
class CacheRequest:
    """One call as the cache sees it.

    :param endpoint: which API method, such as ``"chat.completions"``.
    :param params: the arguments that go upstream (read-only mapping).
    :param options: the parsed ``cache_*`` options.
    :param namespace: the client's isolation prefix.
    :param provider: an identity of the upstream (base URL, organization, project) that
        keeps two providers from sharing entries.
    """

    endpoint: Endpoint
    params: Mapping[str, Any]
    options: CacheOptions = field(default_factory=CacheOptions)
    namespace: str = "default"
    provider: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.params, MappingProxyType):
            object.__setattr__(self, "params", _frozen(self.params))
