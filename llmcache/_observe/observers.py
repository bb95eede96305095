"""Deliver cache events to the ``llmcache_on_*`` hooks, isolating observers that fail."""

from __future__ import annotations

import logging
from typing import Literal

from llmcache import _plugins
from llmcache._observe.events import CacheEvent
from llmcache._plugins import PluginRegistry

__all__ = ["Observers"]

log = logging.getLogger("llmcache")

EventName = Literal["llmcache_on_hit", "llmcache_on_miss", "llmcache_on_store", "llmcache_on_error"]


class Observers:
    """Call every implementation of an event hook; one that raises is logged and skipped."""

    def __init__(self, registry: PluginRegistry) -> None:
        self._registry = registry
        self._wanted: dict[str, bool] = {}
        self._version = -1

    def wanted(self, name: EventName) -> bool:
        """Tell whether any plugin observes ``name`` (so the event is worth building)."""
        if _plugins.generation != self._version:  # plugins changed: look again
            self._wanted = {}
            self._version = _plugins.generation
        wanted = self._wanted.get(name)
        if wanted is None:
            wanted = self._wanted[name] = bool(
                getattr(self._registry.pm.hook, name).get_hookimpls()
            )
        return wanted

    def emit(self, name: EventName, event: CacheEvent) -> None:
        """Deliver ``event`` to each observer of ``name``."""
        for impl in getattr(self._registry.pm.hook, name).get_hookimpls():
            try:
                impl.function(event=event)
            except Exception:
                log.exception("llmcache observer %s.%s raised", impl.plugin_name, name)
