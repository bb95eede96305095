"""What a backend can do, detected once when a tier is built, with defaults for the rest.

A backend must have ``get``, ``set(key, value, ttl)``, ``delete(keys)`` and
``clear(pattern, older_than)`` (see :class:`~llmcache.backends.base.CacheBackend`);
everything else is optional. :func:`conform` looks once at what a backend has and returns
a store with every method the core calls: the backend itself when it has them all, else a
thin object that binds the backend's own methods and fills the gaps with defaults (bulk
operations looped over single ones, creation times dropped, a no-op ``close``). Nothing on
the hot path reads an attribute a duck-typed backend may lack.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmcache.backends.base import AWAITS
from llmcache.errors import ConfigError

__all__ = ["REQUIRED", "VECTOR_METHODS", "Capabilities", "conform", "declared_options"]

REQUIRED = ("get", "set", "delete", "clear")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one backend does beyond the required methods.

    :param shared: other processes see its entries.
    :param bulk_reads: it has ``get_many``.
    :param bulk_writes: it has ``set_many``.
    :param creation_times: its writes take ``created=`` (promoted entries keep their age).
    :param listing: it lists its keys (``supports_scan`` and ``scan``).
    :param locks: it has cross-process locks (``supports_locks``, ``try_lock``, ``unlock``).
    :param awaits: for an async backend, how the core awaits it (one of ``AWAITS``).
    :param vectors: it may keep semantic vectors and search them itself (``vectors(dim)``
        says whether it does for a size; ``put_vectors``, ``search_vectors``; see
        :class:`~llmcache.backends.base.BaseCacheBackend`).
    """

    shared: bool = False
    bulk_reads: bool = False
    bulk_writes: bool = False
    creation_times: bool = False
    listing: bool = False
    locks: bool = False
    awaits: str = "task"
    vectors: bool = False


VECTOR_METHODS = ("vectors", "put_vectors", "search_vectors")


def _takes(method: Any, name: str) -> bool:
    """Tell whether a callable accepts the keyword ``name``."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: assume it does not
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def _awaits(backend: Any) -> str:
    awaits = getattr(backend, "awaits", None)
    if awaits is None:  # the flags of earlier releases, read for one more release
        if getattr(backend, "in_thread", True) is False:
            return "bounded"
        return "bounded-reads" if getattr(backend, "bounds_reads", False) is True else "task"
    if awaits not in AWAITS:
        raise ConfigError(f"backend {backend!r} has awaits={awaits!r}; known: {', '.join(AWAITS)}")
    return str(awaits)


def detect(backend: Any, *, is_async: bool) -> Capabilities:
    """Return what ``backend`` can do.

    :raises ConfigError: a required method is missing (the message names it), or an async
        backend's required method is not a coroutine function.
    """
    missing = [name for name in REQUIRED if not callable(getattr(backend, name, None))]
    if missing:
        raise ConfigError(
            f"backend {backend!r} lacks {', '.join(missing)}; a backend needs "
            f"{', '.join(REQUIRED)} (see llmcache.CacheBackend)"
        )
    if is_async:
        sync = [n for n in REQUIRED if not inspect.iscoroutinefunction(getattr(backend, n))]
        if sync:
            raise ConfigError(
                f"async backend {backend!r} has {', '.join(sync)} as plain functions; "
                "an async factory must return coroutine methods (or register a sync factory "
                "alone: async clients then run it in a worker thread)"
            )

    def has(name: str) -> bool:
        return callable(getattr(backend, name, None))

    return Capabilities(
        shared=getattr(backend, "shared", False) is True,
        bulk_reads=has("get_many"),
        bulk_writes=has("set_many") and _takes(backend.set_many, "created"),
        creation_times=_takes(backend.set, "created"),
        listing=getattr(backend, "supports_scan", False) is True and has("scan"),
        locks=getattr(backend, "supports_locks", False) is True
        and has("try_lock")
        and has("unlock"),
        awaits=_awaits(backend) if is_async else "task",
        vectors=all(has(name) for name in VECTOR_METHODS),
    )


class _Filled:
    """A sync backend's own methods, and defaults where it has none."""

    def __init__(self, backend: Any, caps: Capabilities) -> None:
        self.backend = backend
        self.shared = caps.shared
        self.supports_locks = caps.locks
        self.supports_scan = caps.listing
        self.get = backend.get
        self.delete = backend.delete
        self.clear = backend.clear
        if caps.bulk_reads:
            self.get_many = backend.get_many  # type: ignore[method-assign]
        if caps.bulk_writes:
            self.set_many = backend.set_many  # type: ignore[method-assign]
        if caps.creation_times:
            self.set = backend.set
        else:
            plain_set = backend.set
            self.set = lambda key, value, ttl, created=None: plain_set(key, value, ttl)
        self.close = getattr(backend, "close", None) or (lambda: None)
        for name in ("scan", "try_lock", "unlock", *VECTOR_METHODS):
            if hasattr(backend, name):
                setattr(self, name, getattr(backend, name))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        for key, value in items.items():
            self.set(key, value, ttl, created=created)

    def __repr__(self) -> str:
        return repr(self.backend)


async def _nothing() -> None:
    return None


class _AsyncFilled(_Filled):
    """An async backend's own coroutines, and defaults where it has none."""

    def __init__(self, backend: Any, caps: Capabilities) -> None:
        super().__init__(backend, caps)
        self.awaits = caps.awaits
        if getattr(backend, "close", None) is None:
            self.close = _nothing

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:  # type: ignore[override]
        return [await self.get(key) for key in keys]

    async def set_many(  # type: ignore[override]
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        for key, value in items.items():
            await self.set(key, value, ttl, created=created)


_COMPLETE = ("get_many", "set_many", "close")


def conform(backend: Any, *, is_async: bool) -> tuple[Any, Capabilities]:
    """Return a store with every method the core calls, and the backend's capabilities.

    :raises ConfigError: see :func:`detect`.
    """
    caps = detect(backend, is_async=is_async)
    complete = caps.creation_times and caps.bulk_reads and caps.bulk_writes
    if complete and all(callable(getattr(backend, n, None)) for n in _COMPLETE):
        return backend, caps  # nothing to fill: the core calls the backend itself
    return (_AsyncFilled if is_async else _Filled)(backend, caps), caps


def declared_options(factory: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Return the keyword options ``factory`` declares (all of them if it takes ``**``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return dict(options)
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return dict(options)
    names = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return {name: value for name, value in options.items() if name in names}
