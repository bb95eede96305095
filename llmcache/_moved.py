"""The old import paths of modules that moved into private groups, kept for one release.

``import llmcache.keys`` (or any module below) still works and warns with a
:class:`DeprecationWarning` naming the new place; the public names those modules offered are
exported from ``llmcache``, ``llmcache.backends`` and ``llmcache.tools`` now.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["MOVED", "install"]

#: old module path -> new module path (a package's submodules move with it)
MOVED = {
    "llmcache.async_engine": "llmcache._engine.async_engine",
    "llmcache.batch": "llmcache._engine.batch",
    "llmcache.breaker": "llmcache._tiers.breaker",
    "llmcache.cli": "llmcache.tools.cli",
    "llmcache.cli_serve": "llmcache.tools.serve_cli",
    "llmcache.client": "llmcache._wrapper.client",
    "llmcache.codec": "llmcache._tiers.codec",
    "llmcache.core": "llmcache._engine.core",
    "llmcache.demo": "llmcache.tools.demo",
    "llmcache.embeddings": "llmcache._engine.embeddings",
    "llmcache.engine": "llmcache._engine.engine",
    "llmcache.events": "llmcache._observe.events",
    "llmcache.globs": "llmcache.backends.globs",
    "llmcache.inventory": "llmcache.tools.inventory",
    "llmcache.keys": "llmcache._rules.keys",
    "llmcache.logthrottle": "llmcache._observe.logthrottle",
    "llmcache.metrics": "llmcache.integrations.prometheus",
    "llmcache.observers": "llmcache._observe.observers",
    "llmcache.options": "llmcache._rules.options",
    "llmcache.planning": "llmcache._engine.planning",
    "llmcache.plugins": "llmcache._plugins",
    "llmcache.pricing": "llmcache._rules.pricing",
    "llmcache.prompt": "llmcache._rules.prompt",
    "llmcache.request": "llmcache._rules.request",
    "llmcache.resources": "llmcache._wrapper.resources",
    "llmcache.simulator": "llmcache.tools.simulator",
    "llmcache.singleflight": "llmcache._engine.singleflight",
    "llmcache.stats": "llmcache._observe.stats",
    "llmcache.streaming": "llmcache._engine.streaming",
    "llmcache.tiers": "llmcache._tiers.tiers",
    "llmcache.ttl": "llmcache._rules.ttl",
    "llmcache.urls": "llmcache.backends.urls",
}


def new_path(name: str) -> str | None:
    """Return where module ``name`` lives now, or ``None`` if it did not move."""
    head, _, rest = name.partition(".")
    while True:
        target = MOVED.get(head)
        if target is not None:
            return target + (f".{rest}" if rest else "")
        if not rest:
            return None
        part, _, rest = rest.partition(".")
        head = f"{head}.{part}"


class _Alias(types.ModuleType):
    """A module at an old path: every attribute read goes to the module's new home."""

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.modules[self.__dict__["_target"]], name)

    def __dir__(self) -> list[str]:
        return dir(sys.modules[self.__dict__["_target"]])


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths and loads them as aliases."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("llmcache.") or new_path(fullname) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        target = new_path(spec.name)
        assert target is not None
        warnings.warn(
            f"{spec.name} moved to {target}; import public names from llmcache, "
            "llmcache.backends or llmcache.tools (the old path goes in the next release)",
            DeprecationWarning,
            stacklevel=2,
        )
        importlib.import_module(target)
        module = _Alias(spec.name)
        module.__dict__["_target"] = target
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the alias reads everything from the new module."""


def install() -> None:
    """Put the finder of old paths on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())  # before a stale folder of an old install
