"""LangChain's LLM cache over llmcache tiers: :class:`LLMCache`.

``LLMCache`` is a ``langchain_core.caches.BaseCache``. Set it as LangChain's global cache (or
pass it as a model's ``cache=``) and every LangChain LLM and chat model looks its answers up
in llmcache's tiers first, whatever the provider::

    from langchain_core.globals import set_llm_cache
    from llmcache.integrations.langchain import LLMCache

    set_llm_cache(LLMCache(tiers=["memory://", "redis://localhost:6379/0"], namespace="app"))

An entry is keyed by a BLAKE2b digest of LangChain's ``(prompt, llm_string)`` under the
namespace (logical key ``langchain:v1-<hex>``), and holds the generations in LangChain's own
JSON serialisation (``langchain_core.load.dumps``) in an entry of kind ``"langchain"``; it is
read back with ``loads`` allowed to build generation and message classes only. Promotion,
TTLs, signing, fail-open, circuit breakers and statistics are the tiers' own, exactly as for a
``CachedClient``. Needs ``pip install 'llmcache[langchain]'``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from llmcache._engine.core import CacheCore
from llmcache._observe.stats import CacheStats
from llmcache._rules.keys import physical_key
from llmcache._rules.request import CacheRequest
from llmcache._tiers.codec import COMPRESS_THRESHOLD, CorruptEntry, Entry
from llmcache._tiers.steps import Steps
from llmcache._tiers.tier import Found, Tier, build_tiers
from llmcache._tiers.tiers import AsyncTiers, Tiers
from llmcache.backends import globs
from llmcache.backends.base import SyncToAsync
from llmcache.errors import ConfigError, MissingExtraError

try:
    from langchain_core.caches import BaseCache
    from langchain_core.load import Serializable, dumps, loads
    from langchain_core.messages import AIMessage, AIMessageChunk, ChatMessage, ChatMessageChunk
    from langchain_core.outputs import (
        ChatGeneration,
        ChatGenerationChunk,
        Generation,
        GenerationChunk,
    )
except ImportError as exc:
    what = "llmcache.integrations.langchain"
    raise MissingExtraError(what, "langchain", "langchain-core") from exc

__all__ = ["KIND", "LLMCache"]

log = logging.getLogger("llmcache")

KIND = "langchain"
"""The kind of the entries :class:`LLMCache` writes."""

KEY_VERSION = "v1"
_LOGICAL_PREFIX = "langchain:"
# What an entry may build: the classes of a cached answer, nothing that takes an endpoint,
# a secret or a template (entries in shared tiers are bytes anyone with access could write).
_ALLOWED: list[type[Serializable]] = [
    Generation,
    GenerationChunk,
    ChatGeneration,
    ChatGenerationChunk,
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    ChatMessageChunk,
]


class _Call:
    """One cache operation as the tiers see it (a :class:`~llmcache._tiers.tiers.Scope`): a tier
    that fails during it is not tried again within it."""

    __slots__ = ("failed", "key")
    request: CacheRequest | None = None  # no SDK request behind it: no observer events

    def __init__(self, key: str) -> None:
        self.key = key
        self.failed: set[Tier] | None = None


def _load(text: str) -> list[Generation]:
    """Build the generations of an entry's text.

    :raises CorruptEntry: the text is not a list of LangChain generations.
    """
    try:
        value = loads(text, allowed_objects=_ALLOWED, secrets_from_env=False)
    except Exception as exc:
        raise CorruptEntry(f"not LangChain generations: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(g, Generation) for g in value):
        raise CorruptEntry("not a list of LangChain generations")
    return value


def _generations(entry: Entry) -> list[Generation]:
    """The tiers' ``check``: what a hit serves, fresh objects on every hit."""
    if entry.kind != KIND:
        raise CorruptEntry(f"a {entry.kind!r} entry is not a LangChain entry")
    return _load(entry.payload)


def _usage(generations: Sequence[Generation]) -> tuple[str | None, int, int]:
    """Return the model and the prompt and completion tokens a chat answer reports.

    They make a hit count its tokens and dollars in ``stats()``; plain LLM generations carry
    no standard usage, so they count none.
    """
    for generation in generations:
        message = getattr(generation, "message", None)
        usage = getattr(message, "usage_metadata", None)
        if not usage:
            continue
        model = getattr(message, "response_metadata", {}).get("model_name")
        counts = [usage.get("input_tokens", 0), usage.get("output_tokens", 0)]
        prompt, completion = (c if type(c) is int and c >= 0 else 0 for c in counts)
        return (model if isinstance(model, str) else None), prompt, completion
    return None, 0, 0


def _older_than(options: Mapping[str, Any]) -> float | None:
    """Return ``clear``'s ``older_than``.

    :raises TypeError: an unknown keyword, naming the known one.
    :raises ValueError: ``older_than`` is not a number of seconds >= 0.
    """
    unknown = sorted(set(options) - {"older_than"})
    if unknown:
        raise TypeError(f"unknown clear option {unknown[0]!r}; known: older_than")
    older_than = options.get("older_than")
    if older_than is not None and (
        isinstance(older_than, bool)
        or not isinstance(older_than, (int, float))
        or not older_than >= 0
    ):
        raise ValueError(f"older_than must be a number of seconds >= 0, not {older_than!r}")
    return older_than


def _check_options(
    fail_open: Any,
    backend_timeout: Any,
    failure_threshold: Any,
    recovery_time: Any,
    signing_key: Any,
    compress_threshold: Any,
) -> None:
    """Reject the storage options :class:`~llmcache._engine.core.CacheCore` takes on trust.

    :raises ConfigError: naming the option and what it accepts.
    """

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    problems = [
        (isinstance(fail_open, bool), "fail_open must be True or False", fail_open),
        (
            number(backend_timeout) and backend_timeout > 0,
            "backend_timeout must be a number of seconds > 0",
            backend_timeout,
        ),
        (
            count(failure_threshold) and failure_threshold >= 1,
            "failure_threshold must be a whole number >= 1",
            failure_threshold,
        ),
        (
            number(recovery_time) and recovery_time >= 0,
            "recovery_time must be a number of seconds >= 0",
            recovery_time,
        ),
        (
            signing_key is None or isinstance(signing_key, (str, bytes)),
            "signing_key must be a str, bytes or None",
            signing_key,
        ),
        (
            count(compress_threshold) and compress_threshold >= 0,
            "compress_threshold must be a whole number of bytes >= 0",
            compress_threshold,
        ),
    ]
    for ok, message, value in problems:
        if not ok:
            raise ConfigError(f"{message}, not {value!r}")


class LLMCache(BaseCache):  # type: ignore[misc]  # BaseCache is Any where LangChain is absent
    """A LangChain ``BaseCache`` over llmcache tiers (any backend: memory, SQLite, SQL
    databases, Redis, memcached or a plugin's).

    The sync methods (``lookup``, ``update``, ``clear``) drive the tiers with blocking
    calls; the async ones (``alookup``, ``aupdate``, ``aclear``) drive an async set of the
    same tiers, built on first use, over the same in-process memory stores (called inline)
    and the same statistics and circuit breakers.

    The parameters are ``CachedClient``'s storage options:

    :param tiers: tier URLs, L1 first (default: one in-process ``memory://`` tier).
    :param namespace: isolation prefix (letters, digits, ``_``, ``.``, ``-``); ``clear``
        removes this cache's entries of the namespace and nothing else.
    :param default_ttl: seconds an answer is kept; ``None``: forever.
    :param plugins: plugins for this cache only, on top of the process-wide ones (backends).
    :param signing_key: sign entries with HMAC-SHA256; unsigned or badly signed entries are
        misses, counted as errors.
    :param fail_open: skip a failing tier (counted in ``errors``) instead of raising
        :class:`~llmcache.BackendError`.
    :param backend_timeout: seconds a tier call may take (a tier URL's ``?timeout=`` wins).
    :param failure_threshold: consecutive failures that open a tier's circuit breaker.
    :param recovery_time: seconds before a broken tier is tried again.
    :param pricing: ``{"model": {"input": ..., "output": ..., "cached_input": ...}}`` in USD
        per million tokens, on top of the built-in price table.
    :param compress_threshold: compress entries larger than this many bytes.
    :raises ConfigError: an option is malformed (the message names it), or a tier URL's
        driver is missing (:class:`~llmcache.MissingExtraError`).
    """

    def __init__(
        self,
        *,
        tiers: Sequence[str] | None = None,
        namespace: str = "default",
        default_ttl: float | None = 86400,
        plugins: Iterable[object] = (),
        signing_key: str | bytes | None = None,
        fail_open: bool = True,
        backend_timeout: float = 1.0,
        failure_threshold: int = 3,
        recovery_time: float = 5.0,
        pricing: Mapping[str, Any] | None = None,
        compress_threshold: int = COMPRESS_THRESHOLD,
    ) -> None:
        super().__init__()
        _check_options(
            fail_open,
            backend_timeout,
            failure_threshold,
            recovery_time,
            signing_key,
            compress_threshold,
        )
        self._core = CacheCore(
            is_async=False,
            tiers=tiers,
            namespace=namespace,
            default_ttl=default_ttl,
            plugins=plugins,
            signing_key=signing_key,
            fail_open=fail_open,
            backend_timeout=backend_timeout,
            failure_threshold=failure_threshold,
            recovery_time=recovery_time,
            pricing=pricing,
            compress_threshold=compress_threshold,
        )
        self._tiers: Tiers = self._core.store
        self._urls = list(tiers) if tiers is not None else ["memory://"]
        self._limits = (backend_timeout, failure_threshold, recovery_time)
        self._async: AsyncTiers | None = None
        self._async_lock = threading.Lock()
        self._prefix = physical_key(namespace, _LOGICAL_PREFIX)
        self._unstorable_warned = False

    # -- keys and entries -------------------------------------------------------------------

    def _key(self, prompt: str, llm_string: str) -> str:
        """Return the physical key of ``(prompt, llm_string)``."""
        blob = orjson.dumps([KEY_VERSION, prompt, llm_string])  # a list of str: canonical
        digest = hashlib.blake2b(blob, digest_size=16).hexdigest()
        return f"{self._prefix}{KEY_VERSION}-{digest}"

    def _entry(self, pkey: str, return_val: Sequence[Generation]) -> Entry | None:
        """Return the entry for ``return_val``, or ``None`` (with a warning) when LangChain's
        serialisation cannot bring it back."""
        generations = list(return_val)
        text = dumps(generations)
        try:
            _load(text)  # dumps writes what it cannot serialise as a marker loads rejects
        except CorruptEntry as exc:
            if not self._unstorable_warned:
                self._unstorable_warned = True
                log.warning("llmcache cannot store LangChain generations: %s", exc)
            return None
        model, prompt, completion = _usage(generations)
        created = time.time()
        ttl = self._core.default_ttl
        expires = None if ttl is None else created + ttl
        return Entry(pkey, created, expires, KIND, text, model, prompt, completion)

    def _store_steps(self, store: Tiers | AsyncTiers, entry: Entry) -> Steps:
        return store.store_steps({entry.key: entry}, store.tiers, self._core.default_ttl, None, 0.0)

    def _served(self, found: Found | None, fresh: bool) -> list[Generation] | None:
        """Count a lookup's outcome and return what it serves."""
        stats = self._core.stats
        if found is None or not fresh:  # a stale entry is one a tier did not drop yet
            stats.miss()
            return None
        entry = found.entry
        stats.hit(found.tier.label, entry.model, entry.prompt_tokens, entry.completion_tokens)
        return found.value  # type: ignore[no-any-return]

    def _clear_pattern(self) -> str:
        return globs.escape(self._prefix) + "*"

    # -- LangChain's BaseCache: sync ----------------------------------------------------------

    def lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        """Return the cached generations of ``(prompt, llm_string)``, or ``None``.

        :param prompt: LangChain's serialised prompt.
        :param llm_string: LangChain's string of the model and its parameters.
        """
        pkey = self._key(prompt, llm_string)
        store = self._tiers
        found, fresh = store.lookup(pkey, store.tiers, None, _Call(pkey), _generations)
        return self._served(found, fresh)

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        """Store the generations of ``(prompt, llm_string)`` in every tier.

        :param return_val: the generations LangChain got from the model.
        """
        pkey = self._key(prompt, llm_string)
        entry = self._entry(pkey, return_val)
        if entry is not None:
            self._tiers.run(self._store_steps(self._tiers, entry), _Call(pkey))

    def clear(self, **kwargs: Any) -> None:
        """Remove this cache's entries of its namespace from every tier (memcached included).

        :param kwargs: ``older_than=S``: only entries created at least S seconds ago.
        :raises TypeError: an unknown keyword.
        :raises ValueError: ``older_than`` is malformed.
        """
        older_than = _older_than(kwargs)
        self._tiers.run(self._tiers.clear_steps(self._clear_pattern(), older_than))

    # -- LangChain's BaseCache: async ---------------------------------------------------------

    def _async_tiers(self) -> AsyncTiers:
        store = self._async
        if store is None:
            with self._async_lock:
                if self._async is None:
                    self._async = self._build_async_tiers()
                store = self._async
        return store

    def _build_async_tiers(self) -> AsyncTiers:
        """Build the async twin of the sync tiers, sharing what makes them one cache."""
        core = self._core
        timeout, threshold, recovery = self._limits
        built = build_tiers(
            self._urls,
            core.registry,
            is_async=True,
            timeout=timeout,
            failure_threshold=threshold,
            recovery_time=recovery,
        )
        twins = []
        for sync, tier in zip(core.tier_list, built, strict=True):
            if tier.direct is not None:
                # an in-process store: the async tier calls the sync tier's own store inline,
                # so what invoke() cached, ainvoke() finds (one memory://, not two)
                store = sync.backend
                tier = dataclasses.replace(
                    tier, backend=SyncToAsync(store, in_thread=False), direct=store
                )
            # one server, one health record, whichever door calls it
            twins.append(dataclasses.replace(tier, breaker=sync.breaker))
        sync_store = self._tiers
        return AsyncTiers(
            twins, sync_store.codec, core.stats, core.observers, fail_open=sync_store.fail_open
        )

    async def alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        """The async twin of :meth:`lookup`."""
        pkey = self._key(prompt, llm_string)
        store = self._async_tiers()
        found, fresh = await store.lookup(pkey, store.tiers, None, _Call(pkey), _generations)
        return self._served(found, fresh)

    async def aupdate(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        """The async twin of :meth:`update`."""
        pkey = self._key(prompt, llm_string)
        entry = self._entry(pkey, return_val)
        if entry is not None:
            store = self._async_tiers()
            await store.run(self._store_steps(store, entry), _Call(pkey))

    async def aclear(self, **kwargs: Any) -> None:
        """The async twin of :meth:`clear`."""
        older_than = _older_than(kwargs)
        store = self._async_tiers()
        await store.run(store.clear_steps(self._clear_pattern(), older_than))

    # -- like a CachedClient ------------------------------------------------------------------

    @property
    def tiers(self) -> list[str]:
        """The tier labels, L1 first (``["L1:memory", "L2:redis"]``)."""
        return self._core.labels

    def stats(self) -> CacheStats:
        """Return a snapshot of this cache's counters (sync and async calls together)."""
        return self._core.stats_snapshot()

    def reset_stats(self) -> None:
        """Set this cache's counters back to zero."""
        self._core.stats.reset()

    def close(self) -> None:
        """Close the sync tiers (call :meth:`aclose` too once the async ones were used)."""
        self._tiers.close()

    async def aclose(self) -> None:
        """Close the async tiers, if they were built."""
        if self._async is not None:
            await self._async.close()

    def __repr__(self) -> str:
        labels = ", ".join(self.tiers)
        return f"<LLMCache [{labels}] namespace={self._core.namespace!r}>"
