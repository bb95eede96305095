"""The plugin manager: built-ins, entry points, and plugins registered at run time.

Built-in backends, key strategies and TTL policies are ordinary plugins listed in
:data:`DEFAULT_PLUGINS`. Third-party packages (and llmcache's own adapters) are found
through the ``llmcache`` entry-point group, loaded lazily and once. Set
``LLMCACHE_DISABLE_PLUGIN_AUTOLOAD=1`` to skip entry points; ``LLMCACHE_PLUGINS`` may then
name the entry points to load all the same (comma-separated).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from llmcache import hookspecs
from llmcache.errors import ConfigError

__all__ = [
    "DEFAULT_PLUGINS",
    "BackendFactory",
    "PluginRegistry",
    "get_registry",
    "register_plugin",
    "unregister_plugin",
]

log = logging.getLogger("llmcache")

DEFAULT_PLUGINS = (
    "llmcache.backends.memory",
    "llmcache._rules.keys",
    "llmcache._rules.ttl",
    "llmcache.providers.builtin",
    "llmcache.semantic.embedders",
)
ENTRY_POINT_GROUP = "llmcache"
DISABLE_AUTOLOAD_ENV = "LLMCACHE_DISABLE_PLUGIN_AUTOLOAD"
PLUGINS_ENV = "LLMCACHE_PLUGINS"


@dataclass(frozen=True, slots=True)
class BackendFactory:
    """A URL scheme's factories, as a plugin registered them."""

    scheme: str
    factory: Callable[..., Any]
    async_factory: Callable[..., Any] | None = None


class _Catalog:
    """What the registration hooks of one plugin set yielded."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.backends: dict[str, BackendFactory] = {}
        self.key_strategies: dict[str, Any] = {}
        self.ttl_policies: dict[str, Any] = {}
        self.providers: dict[str, Any] = {}
        self.embedders: dict[str, Callable[..., Any]] = {}

        def register_backend(
            scheme: str,
            factory: Callable[..., Any],
            async_factory: Callable[..., Any] | None = None,
        ) -> None:
            self.backends[scheme] = BackendFactory(scheme, factory, async_factory)

        # get_hookimpls() lists implementations in registration order: a later plugin's
        # registration overwrites an earlier one's under the same name.
        for impl in pm.hook.llmcache_register_backends.get_hookimpls():
            impl.function(register_backend)
        for impl in pm.hook.llmcache_register_key_strategies.get_hookimpls():
            impl.function(self.key_strategies.__setitem__)
        for impl in pm.hook.llmcache_register_ttl_policies.get_hookimpls():
            impl.function(self.ttl_policies.__setitem__)
        for impl in pm.hook.llmcache_register_providers.get_hookimpls():
            impl.function(lambda provider: self.providers.__setitem__(provider.name, provider))
        for impl in pm.hook.llmcache_register_embedders.get_hookimpls():
            impl.function(self.embedders.__setitem__)


def _autoload_names() -> tuple[bool, set[str]]:
    disabled = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in {"1", "true", "yes"}
    wanted = {n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()}
    return disabled, wanted


generation = 0
"""Bumped whenever the plugins of any registry change: what was resolved from them may be
stale (one global number, so the hot path's check is a single read)."""


def _changed() -> None:
    global generation
    generation += 1


class PluginRegistry:
    """A set of plugins and what they registered, resolved lazily and once.

    The process-wide registry holds the built-ins, the entry points and whatever
    :func:`register_plugin` added; a client given ``plugins=[...]`` gets a child registry
    that adds them on top.
    """

    def __init__(self, parent: PluginRegistry | None = None, extra: Iterable[object] = ()) -> None:
        self._parent = parent
        self._extra = list(extra)
        self._lock = threading.RLock()
        self._pm: pluggy.PluginManager | None = None
        self._catalog: _Catalog | None = None
        self._version = 0
        self._seen = 0

    # -- loading -------------------------------------------------------------------------

    def _build(self) -> pluggy.PluginManager:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        if self._parent is None:
            for name in DEFAULT_PLUGINS:
                pm.register(importlib.import_module(name), name=name)
            self._load_entry_points(pm)
        else:
            for name, plugin in self._parent.pm.list_name_plugin():
                pm.register(plugin, name=name)
        for plugin in self._extra:
            if not pm.is_registered(plugin):
                pm.register(plugin)
        return pm

    @staticmethod
    def _load_entry_points(pm: pluggy.PluginManager) -> None:
        disabled, wanted = _autoload_names()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if disabled and ep.name not in wanted:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception:  # a broken third-party plugin must not break import llmcache
                log.warning("llmcache plugin %r failed to load", ep.name, exc_info=True)
                continue
            pm.register(plugin, name=ep.name)

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy plugin manager, built on first use."""
        with self._lock:
            parent_version = self._parent._version if self._parent is not None else 0
            if self._pm is None or (self._parent is not None and self._seen != parent_version):
                self._pm = self._build()
                self._catalog = None
                self._seen = parent_version
            return self._pm

    @property
    def _cat(self) -> _Catalog:
        pm = self.pm
        with self._lock:
            if self._catalog is None:
                self._catalog = _Catalog(pm)
            return self._catalog

    # -- changes -------------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Add ``plugin`` and forget what was resolved so far."""
        with self._lock:
            registered = self.pm.register(plugin, name=name)
            self._catalog = None
            self._version += 1
            _changed()
            return registered

    def unregister(self, plugin: object) -> None:
        """Remove ``plugin`` and forget what was resolved so far."""
        with self._lock:
            self.pm.unregister(plugin)
            self._catalog = None
            self._version += 1
            _changed()

    def child(self, plugins: Iterable[object]) -> PluginRegistry:
        """Return a registry with these plugins on top of this one's."""
        return PluginRegistry(parent=self, extra=plugins)

    # -- lookups -------------------------------------------------------------------------

    def backend(self, scheme: str) -> BackendFactory:
        """Return the factories registered for a URL scheme.

        :raises ConfigError: no plugin serves the scheme; the message lists the known ones.
        """
        backends = self._cat.backends
        try:
            return backends[scheme]
        except KeyError:
            raise ConfigError(
                f"unknown cache URL scheme {scheme!r}; known: {', '.join(sorted(backends))}"
            ) from None

    def key_strategy(self, name: str) -> Any:
        """Return the key strategy registered as ``name``."""
        return _lookup("key strategy", name, self._cat.key_strategies)

    def ttl_policy(self, name: str) -> Any:
        """Return the TTL policy registered as ``name``."""
        return _lookup("TTL policy", name, self._cat.ttl_policies)

    def embedder(self, name: str) -> Callable[..., Any]:
        """Return the factory of the embedder registered as ``name``."""
        return _lookup("embedder", name, self._cat.embedders)  # type: ignore[no-any-return]

    def providers(self) -> list[Any]:
        """Return the registered providers, in registration order."""
        return list(self._cat.providers.values())

    def schemes(self) -> list[str]:
        """Return the URL schemes served, sorted."""
        return sorted(self._cat.backends)

    def has_observers(self, hook: str) -> bool:
        """Tell whether any plugin implements the event hook ``hook``."""
        return bool(getattr(self.pm.hook, hook).get_hookimpls())


def _lookup(what: str, name: str, known: dict[str, Any]) -> Any:
    if not isinstance(name, str):
        raise ConfigError(f"{what} must be a name or an object, not {name!r}")
    try:
        return known[name]
    except KeyError:
        raise ConfigError(f"unknown {what} {name!r}; known: {', '.join(known)}") from None


_registry = PluginRegistry()


def get_registry() -> PluginRegistry:
    """Return the process-wide plugin registry."""
    return _registry


def register_plugin(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin for every client of this process.

    :param plugin: a module or object with ``@llmcache.hookimpl`` functions.
    :param name: an optional name; pluggy derives one otherwise.
    :return: the name it was registered under.
    """
    return _registry.register(plugin, name=name)


def unregister_plugin(plugin: object) -> None:
    """Remove a plugin added by :func:`register_plugin`."""
    _registry.unregister(plugin)
