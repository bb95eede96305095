"""Cache keys: the canonical request digest and the built-in key strategies.

The default key is a versioned BLAKE2b digest of the canonical request: every upstream
argument but a short deny-list of ones that cannot change the answer, the endpoint, and the
upstream's identity. Dict key order does not matter; list order does. New SDK parameters
are in the key without anyone listing them.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import orjson

from llmcache._rules.request import CacheRequest
from llmcache.errors import ConfigError
from llmcache.hookspecs import RegisterKeyStrategy, hookimpl

__all__ = [
    "DENIED_PARAMS",
    "KEY_VERSION",
    "ExplicitKeyStrategy",
    "KeyStrategy",
    "RequestKeyStrategy",
    "UncacheableRequest",
    "canonical_params",
    "has_non_finite",
    "namespace_glob",
    "null_free",
    "params_digest",
    "physical_key",
    "request_digest",
    "split_physical_key",
]

KEY_VERSION = "v1"
DENIED_PARAMS = frozenset(
    {
        "stream",
        "stream_options",
        "timeout",
        "extra_headers",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
    }
)
_SENTINELS = frozenset({"NotGiven", "Omit"})
_OPTIONS = orjson.OPT_SORT_KEYS
# Argument types that are never an SDK sentinel (NotGiven, Omit): JSON's own.
_PLAIN_KINDS = frozenset({str, int, float, bool, type(None), list, dict, tuple})


class UncacheableRequest(TypeError):
    """An argument that cannot be turned into a stable key; the call bypasses the cache."""

    def __init__(self, argument: str) -> None:
        super().__init__(f"argument {argument!r} cannot be canonicalised for a cache key")
        self.argument = argument


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is not None:  # pydantic models, the SDKs' own types included
        return dump(mode="json", exclude_unset=True, by_alias=True)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(type(value).__name__)


def canonical_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the arguments that take part in the key (deny-list and SDK sentinels removed)."""
    kept = params.copy() if type(params) is MappingProxyType else dict(params)
    for name, value in kept.items():
        if name in DENIED_PARAMS or type(value) not in _PLAIN_KINDS:
            break
    else:  # the common call: nothing to leave out
        return kept
    return {
        name: value
        for name, value in kept.items()
        if name not in DENIED_PARAMS and type(value).__name__ not in _SENTINELS
    }


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v) for v in value)
    return False


_LEAVES = frozenset({str, int, bool, type(None)})


def _finite(value: Any) -> bool:
    """Tell whether ``value`` is plain JSON data whose floats are all finite (``False`` also
    for objects orjson dumps through ``_default``: those are looked at closer)."""
    kind = type(value)
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    elif kind is float:
        return math.isfinite(value)
    else:
        return kind in _LEAVES
    for item in items:
        kind = type(item)
        if kind is str:
            continue
        if kind is dict:  # a message: its fields, mostly text, looked at here, not by a call
            for field in item.values():
                if type(field) is not str and not _finite(field):
                    return False
        elif not _finite(item):
            return False
    return True


def _dumps(value: Any, params: Any, nan_check: bool = True) -> bytes:
    """Dump ``value`` canonically; ``params`` is the part of it that may hold floats.

    :param nan_check: with ``False``, NaN and infinities are left as orjson writes them.
    """
    blob = orjson.dumps(value, default=_default, option=_OPTIONS)
    # orjson writes NaN and infinities as null: tell them apart. Walking the values costs
    # by their number, not by the bytes of the prompt (a scan for null costs ~0.7 ns a byte).
    if nan_check and not _finite(params) and b"null" in blob:
        plain = _plain_floats(value)
        if _has_non_finite(plain):
            return json.dumps(plain, sort_keys=True, default=_default).encode()
    return blob


def _plain_floats(value: Any) -> Any:
    """Return ``value`` with SDK objects dumped, so the stdlib encoder sees plain data."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return _default(value)
    if isinstance(value, dict):
        return {k: _plain_floats(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=repr)
    if isinstance(value, (list, tuple)):
        return [_plain_floats(v) for v in value]
    return value


def has_non_finite(params: Mapping[str, Any]) -> bool:
    """Tell whether a float among the arguments that take part in the key is NaN or
    infinite (so that the key is not the digest of the arguments' orjson form)."""
    params = canonical_params(params)
    return not _finite(params) and _has_non_finite(_plain_floats(params))


def null_free(params: Mapping[str, Any]) -> bool:
    """Tell whether the key's canonical JSON of these arguments surely holds no ``null``:
    plain JSON data without ``None`` (``False`` also for SDK objects, looked at no closer)."""
    return _no_null(canonical_params(params))


def _no_null(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        return all(_no_null(item) for item in value.values())
    if kind is list or kind is tuple:
        return all(_no_null(item) for item in value)
    if kind is float:
        return math.isfinite(value)
    return kind is str or kind is int or kind is bool


def request_digest(request: CacheRequest) -> str:
    """Return ``"v1-<hex>"``, the digest of the canonical request.

    :raises UncacheableRequest: an argument cannot be serialised canonically.
    """
    return params_digest(request.endpoint, request.provider, request.params)


def params_digest(
    endpoint: str, provider: str, params: Mapping[str, Any], *, nan_check: bool = True
) -> str:
    """Return :func:`request_digest` of a request known by its endpoint, upstream identity
    and arguments (its ``cache_*`` options take no part in it).

    :param nan_check: with ``False``, skip telling NaN and infinities from ``null``: the
        digest is then this request's only if :func:`has_non_finite` is false for it (else it
        is the digest of the same request with ``None`` in their place). The quick hit path
        defers that check to an entry that may need it (see ``Entry.null_free``).
    :raises UncacheableRequest: an argument cannot be serialised canonically.
    """
    params = canonical_params(params)
    try:
        blob = _dumps((KEY_VERSION, endpoint, provider, params), params, nan_check)
    except TypeError:
        for name, value in params.items():
            try:
                _dumps(value, value)
            except TypeError:
                raise UncacheableRequest(name) from None
        raise
    return f"{KEY_VERSION}-{hashlib.blake2b(blob, digest_size=16).hexdigest()}"


@runtime_checkable
class KeyStrategy(Protocol):
    """How a request becomes its logical key (the namespace is added by the core).

    Any object with this method is a key strategy; subclass this class to say so. Register
    it by name with ``llmcache_register_key_strategies`` or pass it as
    ``key_strategy=MyStrategy()``.
    """

    @abstractmethod
    def key(self, request: CacheRequest) -> str:
        """Return the logical key of ``request``: a non-empty string.

        Raise :class:`UncacheableRequest` for a request that cannot have a stable key: the
        call then goes upstream uncached (warned once per argument).
        """


class RequestKeyStrategy(KeyStrategy):
    """The default: the request digest, scoped by ``cache_key`` when one is given."""

    name = "request"

    def key(self, request: CacheRequest) -> str:
        """Return ``"<cache_key>:<digest>"``, or the digest alone."""
        digest = request_digest(request)
        scope = request.options.key
        return digest if scope is None else f"{scope}:{digest}"


class ExplicitKeyStrategy(KeyStrategy):
    """Use the caller's ``cache_key`` as the whole key (a hit whatever else changes)."""

    name = "explicit"

    def key(self, request: CacheRequest) -> str:
        """Return ``cache_key`` exactly.

        :raises ConfigError: the call gave no ``cache_key``.
        """
        if request.options.key is None:
            raise ConfigError("key_strategy='explicit' needs cache_key=... on every call")
        return request.options.key


@hookimpl
def llmcache_register_key_strategies(register: RegisterKeyStrategy) -> None:
    """Register the built-in strategies ``request`` and ``explicit``."""
    register("request", RequestKeyStrategy())
    register("explicit", ExplicitKeyStrategy())


KEY_PREFIX = "llmcache"


def physical_key(namespace: str, logical: str) -> str:
    """Return the key a backend sees: ``"llmcache:<namespace>:<logical key>"``."""
    return f"{KEY_PREFIX}:{namespace}:{logical}"


def split_physical_key(key: str) -> tuple[str, str] | None:
    """Return ``(namespace, logical key)`` of a physical key, or ``None`` if it is not one."""
    prefix, sep, rest = key.partition(":")
    namespace, sep2, logical = rest.partition(":")
    if prefix != KEY_PREFIX or not sep or not sep2:
        return None
    return namespace, logical


def namespace_glob(namespace: str) -> str:
    """Return the glob matching every physical key of a namespace."""
    return f"{KEY_PREFIX}:{namespace}:*"
