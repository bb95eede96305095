"""One cache: its tiers, statistics, observers, prices and rules, behind every door.

A :class:`CacheCore` is built once from the options users give ``CachedClient``,
``llmcache.http_client`` or ``llmcache.async_http_client``; the wrapper's resources and the
HTTP transport each drive an engine over it, so entries, statistics and plugins are the
same whichever door a call comes through. Clients derived from one another
(``with_options``, ``copy``) share their core.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmcache._engine.planning import Planner
from llmcache._observe.observers import Observers
from llmcache._observe.stats import CacheStats, StatsRecorder
from llmcache._plugins import PluginRegistry, get_registry
from llmcache._rules.keys import physical_key
from llmcache._rules.pricing import PriceTable
from llmcache._tiers.codec import COMPRESS_THRESHOLD, Codec
from llmcache._tiers.tier import build_tiers
from llmcache._tiers.tiers import AsyncTiers, Tiers
from llmcache.backends import globs
from llmcache.errors import ConfigError

__all__ = ["CacheCore"]

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]+")


def _resolve(kind: str, value: Any, lookup: Any, method: str) -> Any:
    if isinstance(value, str):
        return lookup(value)
    if not callable(getattr(value, method, None)):
        raise ConfigError(f"{kind} must be a registered name or an object with .{method}(request)")
    return value


class CacheCore:
    """The storage and rules of one cache (see the module docstring).

    The parameters are ``CachedClient``'s storage options; see its docstring.

    :raises ConfigError: an option is malformed (the message names it).
    """

    def __init__(
        self,
        *,
        is_async: bool,
        tiers: Sequence[str] | None = None,
        namespace: str = "default",
        default_ttl: float | None = 86400,
        key_strategy: Any = "request",
        ttl_policy: Any = "fixed",
        plugins: Iterable[object] = (),
        signing_key: str | bytes | None = None,
        fail_open: bool = True,
        backend_timeout: float = 1.0,
        failure_threshold: int = 3,
        recovery_time: float = 5.0,
        pricing: Mapping[str, Any] | None = None,
        lock_ttl: float = 10.0,
        compress_threshold: int = COMPRESS_THRESHOLD,
        semantic: Mapping[str, Any] | None = None,
        keep_requests: bool = False,
    ) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ConfigError(
                f"namespace {namespace!r} must be letters, digits, '_', '.' or '-' only"
            )
        if default_ttl is not None and not default_ttl > 0:
            raise ConfigError(
                f"default_ttl must be a positive number of seconds or None, not {default_ttl!r}"
            )
        if not isinstance(keep_requests, bool):
            raise ConfigError(f"keep_requests must be True or False, not {keep_requests!r}")
        self.keep_requests = keep_requests
        plugin_list = list(plugins)
        self.is_async = is_async
        self.registry: PluginRegistry = (
            get_registry().child(plugin_list) if plugin_list else get_registry()
        )
        self.namespace = namespace
        self.default_ttl = default_ttl
        self.lock_ttl = lock_ttl
        self.prices = PriceTable(pricing)
        self.stats = StatsRecorder(self.prices)
        self.tier_list = build_tiers(
            tiers if tiers is not None else ["memory://"],
            self.registry,
            is_async=is_async,
            timeout=backend_timeout,
            failure_threshold=failure_threshold,
            recovery_time=recovery_time,
        )
        self.observers = Observers(self.registry)
        codec = Codec(signing_key, compress_threshold)
        self.store: Any = (AsyncTiers if is_async else Tiers)(
            self.tier_list,
            codec,
            self.stats,
            self.observers,
            fail_open=fail_open,
        )
        registry = self.registry
        self.key_strategy = _resolve("key_strategy", key_strategy, registry.key_strategy, "key")
        self.ttl_policy = _resolve("ttl_policy", ttl_policy, registry.ttl_policy, "ttl")
        self.semantic: Any = None  # a SemanticMatcher, with semantic=
        if semantic is not None:
            from llmcache.semantic.matcher import build_matcher  # numpy only for those who ask

            self.semantic = build_matcher(semantic, registry, namespace, codec, self.stats)
        self.closed = False

    def planner(
        self, provider: str, *, sdk_cache_control: bool = False, provider_name: str = "openai"
    ) -> Planner:
        """Return a planner of this cache's rules for calls to the upstream ``provider``."""
        return Planner(
            self.tier_list,
            namespace=self.namespace,
            provider=provider,
            default_ttl=self.default_ttl,
            key_strategy=self.key_strategy,
            ttl_policy=self.ttl_policy,
            sdk_cache_control=sdk_cache_control,
            provider_name=provider_name,
            keep_requests=self.keep_requests,
        )

    def with_namespace(self, namespace: str) -> CacheCore:
        """Return a core sharing this one's tiers, statistics, observers and rules under
        another namespace (a server keeps each tenant's entries apart this way, over one
        set of connections).

        :raises ConfigError: ``namespace`` is malformed.
        """
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ConfigError(
                f"namespace {namespace!r} must be letters, digits, '_', '.' or '-' only"
            )
        derived = copy.copy(self)
        derived.namespace = namespace
        return derived

    @property
    def labels(self) -> list[str]:
        """The tier labels, L1 first."""
        return [t.label for t in self.tier_list]

    def stats_snapshot(self) -> CacheStats:
        """Return a snapshot of the counters."""
        return self.stats.snapshot()

    def clear_steps(self, key: str | None, older_than: float | None) -> Any:
        """Return the steps that clear this namespace (see ``CachedClient.clear_cache``).

        :raises ValueError: ``key`` or ``older_than`` is malformed.
        """
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key must be a non-empty glob over logical keys, not {key!r}")
        if older_than is not None and (isinstance(older_than, bool) or not older_than >= 0):
            raise ValueError(f"older_than must be a number of seconds >= 0, not {older_than!r}")
        prefix = globs.escape(physical_key(self.namespace, ""))
        pattern = prefix + (key if key is not None else "*")
        return self.store.clear_steps(pattern, older_than)
