"""The semantic step of the engine: after an exact miss, serve a checked near match.

:class:`SemanticMatcher` is consulted by the engines after the exact lookup missed
(:meth:`SemanticMatcher.lookup`, :meth:`SemanticMatcher.alookup`) and fed when an answer is
stored (:meth:`SemanticMatcher.store_steps`). Vectors are stored as records beside their
entries, in the same tiers with the same TTL, under the entry's logical key plus
``~sem~<partition>``: a glob over logical keys that clears an entry clears its vector too,
and other processes list them from a shared tier that can list its keys (Redis, SQL).

Where a shared tier searches vectors itself (the ``vectors`` capability: PostgreSQL with
pgvector), each vector is also handed to that tier beside its record, and the search runs
there, within the partition: the tier answers with the few nearest records, and nothing is
indexed in-process. The tier removes such a vector with its record (clears, deletes, expiry).

Anything wrong on the way (no calibration record, an embedder that fails or answers with
vectors of the wrong size, records of another embedder) skips the semantic step with one
warning per cause, counted in ``stats().semantic_errors``; exact caching goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from llmcache._rules.keys import physical_key
from llmcache._tiers.codec import Codec, CorruptEntry, Entry
from llmcache._tiers.ops import GetMany, Op, PutVectors, SearchVectors, Vectors
from llmcache._tiers.steps import FAILED
from llmcache._tiers.tier import Found, Tier
from llmcache.backends import globs
from llmcache.backends.base import SyncToAsync
from llmcache.backends.capabilities import declared_options
from llmcache.errors import ConfigError
from llmcache.semantic.checks import length_ok, same_answer_tokens
from llmcache.semantic.config import SemanticConfig
from llmcache.semantic.index import Member, PartitionIndex
from llmcache.semantic.query import Query, query_of

__all__ = ["Near", "SemanticMatcher"]

log = logging.getLogger("llmcache")

SUFFIX = "~sem~"
PENDING = 4096  # questions embedded on a miss, awaiting their answer's store
FETCH_BATCH = 500


@dataclass(frozen=True, slots=True)
class Near:
    """A semantic hit: the entry found, its logical key, and how similar its question was."""

    found: Found
    key: str
    similarity: float


class SemanticMatcher:
    """Semantic matching for one cache (see the module docstring).

    :param config: the checked ``semantic=`` option.
    :param registry: where embedders are registered.
    :param namespace: the cache's namespace.
    :param codec: the cache's entry codec (vector records are signed like entries).
    :param stats: the cache's counters.
    :raises ConfigError: the embedder is not registered (the message lists the known ones).
    """

    def __init__(
        self, config: SemanticConfig, registry: Any, namespace: str, codec: Codec, stats: Any
    ) -> None:
        self.config = config
        self.namespace = namespace
        self.codec = codec
        self.stats = stats
        self._registry = registry
        self._factory = None
        if isinstance(config.embedder, str):
            self._factory = registry.embedder(config.embedder)
            self._embedder: Any = None
        else:
            self._embedder = config.embedder
        self.client: Any = None
        self._broken: Exception | None = None
        self._indexes: dict[str, PartitionIndex] = {}
        self._synced: dict[str, float] = {}
        self._pending: OrderedDict[str, tuple[Query, Any]] = OrderedDict()
        self._listers: dict[str, Any] = {}  # tier label -> a sync store that lists its keys
        self._searching: dict[str, bool] = {}  # tier label -> whether it searches vectors itself
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._prefix = physical_key(namespace, "")
        if config.problem is not None:
            self._warn("calibration", f"semantic matching is off: {config.problem}")

    def attach(self, engine: Any, client: Any = None) -> None:
        """Plug this matcher into an engine; ``client`` is the wrapper calling through it
        (the ``client`` embedder calls its embeddings endpoint)."""
        engine.semantic = self
        if client is not None and self.client is None:
            self.client = client

    # -- problems ------------------------------------------------------------------------

    def _warn(self, cause: str, message: str) -> None:
        if cause not in self._warned:
            self._warned.add(cause)
            log.warning("llmcache %s; exact caching goes on", message)

    def _skip(self, cause: str, message: str) -> None:
        self.stats.semantic_error()
        self._warn(cause, message)

    # -- the embedder ----------------------------------------------------------------------

    @property
    def embedder(self) -> Any:
        """The embedder, built on first use.

        :raises Exception: whatever its factory raised.
        """
        if self._embedder is None:
            if self._broken is not None:  # built once: a model that failed to load stays so
                raise self._broken
            try:
                self._embedder = self._build()
            except Exception as exc:
                self._broken = exc
                raise
        return self._embedder

    def _build(self) -> Any:
        """Build the registered embedder, checked against the calibration record's model."""
        options = dict(self.config.embedder_options or {})
        options.setdefault("client", self.client)
        factory: Any = self._factory
        embedder = factory(**declared_options(factory, options))
        measured = (self.config.record or {}).get("embedder_model")
        if measured is not None and measured != getattr(embedder, "name", None):
            raise ValueError(
                f"the calibration record was measured with {measured!r}, and the embedder "
                f"{self.config.embedder!r} is now {getattr(embedder, 'name', None)!r}"
            )
        return embedder

    def _vector(self, raw: Any) -> Any:
        """Return the unit vector of an embedder's answer for one text, or ``None``."""
        import numpy as np

        try:
            rows = np.asarray(raw, dtype=np.float32)
            dim = int(self.embedder.dim)
        except Exception as exc:
            self._skip("embedder-output", f"semantic embedder answered junk: {exc}")
            return None
        if rows.ndim != 2 or rows.shape != (1, dim) or not np.isfinite(rows).all():
            self._skip(
                "embedder-dim",
                f"semantic embedder {self._name()!r} returned vectors of shape "
                f"{rows.shape}, not (1, {dim})",
            )
            return None
        norm = float(np.linalg.norm(rows[0]))
        if norm == 0.0:
            return None
        return rows[0] / norm

    def _name(self) -> str:
        try:
            return str(self.embedder.name)
        except Exception:
            return repr(self.config.embedder)

    def _failed(self, exc: BaseException) -> None:
        self._skip("embedder", f"semantic embedder {self.config.embedder!r} failed: {exc!r}")

    def embed(self, text: str) -> Any:
        """Return the unit vector of ``text``, or ``None`` (warned and counted)."""
        try:
            raw = self.embedder.embed([text])
        except Exception as exc:
            self._failed(exc)
            return None
        return self._vector(raw)

    async def aembed(self, text: str) -> Any:
        """The async twin of :meth:`embed` (an embedder's ``aembed`` when it has one)."""
        try:
            embedder = self.embedder
            aembed = getattr(embedder, "aembed", None)
            raw = await aembed([text]) if aembed is not None else embedder.embed([text])
        except Exception as exc:
            self._failed(exc)
            return None
        return self._vector(raw)

    # -- the lookup --------------------------------------------------------------------------

    def _query(self, plan: Any) -> Query | None:
        if self.config.threshold is None:
            self.stats.semantic_error()  # warned once, at construction
            return None
        return query_of(plan.request, allow_sampled=self.config.allow_sampled)

    def _wanted(self, plan: Any, query: Query, vector: Any) -> bool:
        """Keep the question for its answer's store; tell whether to look for a match."""
        with self._lock:
            self._pending[plan.pkey] = (query, vector)
            if len(self._pending) > PENDING:
                self._pending.popitem(last=False)
        return bool(plan.read_tiers) and plan.request.options.semantic

    def _index(self, partition: str) -> PartitionIndex:
        index = self._indexes.get(partition)
        if index is None:
            with self._lock:
                index = self._indexes.get(partition)
                if index is None:
                    index = self._indexes[partition] = PartitionIndex(int(self.embedder.dim))
        return index

    def _indexed(self, query: Query, vector: Any) -> list[tuple[float, Member]]:
        """Return the in-process index's nearest questions of the partition, best first."""
        config = self.config
        assert config.threshold is not None
        index = self._indexes.get(query.partition)
        if index is None:
            return []
        now = time.time()
        hits = []
        for similarity, member in index.search(vector, config.candidates, config.threshold):
            if member.expires is not None and member.expires <= now:
                index.remove(member.key)
                continue
            hits.append((similarity, member))
        return hits

    def _candidates(
        self, query: Query, hits: list[tuple[float, Member]]
    ) -> list[tuple[float, Member]]:
        """Return the near questions that pass every check, best first."""
        config = self.config
        passed = []
        for similarity, member in hits:
            if not same_answer_tokens(query.text, member.text):
                continue
            if not length_ok(query.text, member.text, config.max_length_ratio):
                continue
            if config.verifier is not None and not self._verified(query, member, similarity):
                continue
            passed.append((similarity, member))
        return passed

    def _verified(self, query: Query, member: Member, similarity: float) -> bool:
        try:
            return bool(self.config.verifier(query.text, member.text, similarity))  # type: ignore[misc]
        except Exception as exc:
            self._skip("verifier", f"semantic verifier failed: {exc!r}")
            return False

    def _due(self, partition: str, tiers: Sequence[Tier], listed: bool = True) -> list[Tier]:
        """Return the shared tiers to list now for a partition's vectors.

        :param listed: only those whose store lists its keys (async stores never do: their
            keys are listed through a sync store, see :meth:`_lister`).
        """
        listing = [t for t in tiers if t.shared and (t.caps.listing or not listed)]
        if not listing:
            return []
        now = time.monotonic()
        last = self._synced.get(partition)
        if last is not None and now - last < self.config.sync_interval:
            return []
        self._synced[partition] = now
        return listing

    def _pattern(self, partition: str) -> str:
        return globs.escape(self._prefix) + "*" + SUFFIX + partition

    def lookup(self, engine: Any, plan: Any, adapter: Any, stream: bool) -> Near | None:
        """Return a near match of a call whose exact lookup missed, or ``None``."""
        query = self._query(plan)
        if query is None:
            return None
        vector = self.embed(query.text)
        if vector is None or not self._wanted(plan, query, vector):
            return None
        tiers = engine.tiers
        server = tiers.run(self._server_steps(plan.read_tiers, vector), plan)
        if server is not None:
            hits = tiers.run(self._search_steps(server, query, vector), plan)
        else:
            for tier in self._due(query.partition, plan.read_tiers):
                keys = self._listed(tier, query.partition)
                steps = self._fetch_steps(tier, query.partition, keys)
                tiers.run(steps, plan)
            hits = self._indexed(query, vector)
        check = engine.checker(plan, adapter, stream)
        for similarity, member in self._candidates(query, hits):
            pkey = self._prefix + member.key
            steps = tiers.lookup_steps(pkey, plan.read_tiers, plan.max_age, plan, check)
            found, fresh = tiers.run(steps, plan)
            if fresh:
                return self._near(plan, found, member, similarity)
            self._gone(query.partition, member)
        return None

    def _gone(self, partition: str, member: Member) -> None:
        """Forget a question whose entry is gone."""
        index = self._indexes.get(partition)
        if index is not None:
            index.remove(member.key)

    def _near(self, plan: Any, found: Found, member: Member, similarity: float) -> Near:
        with self._lock:  # served from another entry: nothing of this call will be stored
            self._pending.pop(plan.pkey, None)
        return Near(found, member.key, similarity)

    async def alookup(self, engine: Any, plan: Any, adapter: Any, stream: bool) -> Near | None:
        """The async twin of :meth:`lookup`."""
        query = self._query(plan)
        if query is None:
            return None
        vector = await self.aembed(query.text)
        if vector is None or not self._wanted(plan, query, vector):
            return None
        tiers = engine.tiers
        server = await tiers.run(self._server_steps(plan.read_tiers, vector), plan)
        if server is not None:
            hits = await tiers.run(self._search_steps(server, query, vector), plan)
        else:
            for tier in self._due(query.partition, plan.read_tiers, listed=False):
                lister = await asyncio.to_thread(self._lister, tier)
                if lister is None:
                    continue
                keys = await asyncio.to_thread(self._listed, tier, query.partition, lister)
                await tiers.run(self._fetch_steps(tier, query.partition, keys), plan)
            hits = self._indexed(query, vector)
        check = engine.checker(plan, adapter, stream)
        for similarity, member in self._candidates(query, hits):
            pkey = self._prefix + member.key
            steps = tiers.lookup_steps(pkey, plan.read_tiers, plan.max_age, plan, check)
            found, fresh = await tiers.run(steps, plan)
            if fresh:
                return self._near(plan, found, member, similarity)
            self._gone(query.partition, member)
        return None

    # -- vectors searched by a tier (pgvector) -----------------------------------------------

    def _space(self, partition: str) -> str:
        """Name a partition in a tier's vector search: namespace, embedder and partition."""
        seed = f"{self._prefix}\0{self._name()}\0{partition}".encode()
        return hashlib.sha256(seed).hexdigest()[:32]

    def _searches(self, tier: Tier, vector: Any) -> Generator[Op, Any, bool]:
        """Tell whether a tier searches vectors of this size itself (asked once per tier)."""
        if not (tier.shared and tier.caps.vectors):
            return False
        known = self._searching.get(tier.label)
        if known is None:
            answer = yield Vectors(tier, int(vector.shape[0]))
            if answer is FAILED:  # unreachable now: asked again on the next call
                return False
            known = self._searching[tier.label] = answer is True
        return known

    def _server_steps(self, tiers: Sequence[Tier], vector: Any) -> Generator[Op, Any, Any]:
        """Return the first of ``tiers`` that searches vectors itself, or ``None``."""
        for tier in tiers:
            if (yield from self._searches(tier, vector)):
                return tier
        return None

    def _search_steps(
        self, tier: Tier, query: Query, vector: Any
    ) -> Generator[Op, Any, list[tuple[float, Member]]]:
        """Search a tier for the partition's nearest questions (their records come along)."""
        config = self.config
        threshold = config.threshold
        assert threshold is not None
        dim = int(vector.shape[0])
        space = self._space(query.partition)
        found = yield SearchVectors(tier, dim, space, vector.tolist(), config.candidates, threshold)
        if found is FAILED:
            return []
        hits = []
        for key, similarity, data in found:
            member = self._member(query.partition, key, data, dim)
            if member is not None and similarity >= threshold:
                hits.append((similarity, member[0]))
        return hits

    # -- vectors of other processes ----------------------------------------------------------

    def _lister(self, tier: Tier) -> Any:
        """Return a sync store listing an async tier's keys: the store a worker thread serves
        it from, or one built from its URL (async stores do not list), kept per tier."""
        if isinstance(tier.backend, SyncToAsync):
            return tier.backend.backend
        with self._lock:
            if tier.label in self._listers:
                return self._listers[tier.label]
        try:
            scheme = tier.url.scheme
            if scheme not in self._registry.schemes():
                scheme = scheme.split("+", 1)[0]  # as the tier was built
            spec = self._registry.backend(scheme)
            made = spec.factory(
                tier.url.url, **declared_options(spec.factory, {"timeout": tier.timeout})
            )
            lister = made if getattr(made, "supports_scan", False) else None
        except Exception as exc:
            self._skip("listing", f"could not list semantic vectors in {tier.label}: {exc!r}")
            lister = None
        with self._lock:
            self._listers[tier.label] = lister
        return lister

    def _listed(self, tier: Tier, partition: str, backend: Any = None) -> list[str]:
        """Return the keys of a partition's vector records in a shared tier."""
        try:
            store = tier.backend if backend is None else backend
            return [item.key for item in store.scan(self._pattern(partition))]
        except Exception as exc:
            self._skip("listing", f"could not list semantic vectors in {tier.label}: {exc!r}")
            return []

    def _fetch_steps(self, tier: Tier, partition: str, keys: list[str]) -> Any:
        """Read the vector records not indexed yet and index them."""
        index = self._index(partition)
        start = len(self._prefix)
        wanted = [k for k in keys if k[start : k.rfind(SUFFIX)] not in index]
        for at in range(0, len(wanted), FETCH_BATCH):
            batch = wanted[at : at + FETCH_BATCH]
            values = yield GetMany(tier, batch)
            if values is FAILED:
                return
            for key, data in zip(batch, values, strict=True):
                if data is not None:
                    self._load(index, partition, key, data)

    def _load(self, index: PartitionIndex, partition: str, key: str, data: bytes) -> None:
        loaded = self._member(partition, key, data, index.dim)
        if loaded is not None:
            index.add(*loaded)

    def _member(self, partition: str, key: str, data: bytes, dim: int) -> tuple[Member, Any] | None:
        """Decode a vector record of ``partition``: its question and vector, or ``None``."""
        import numpy as np

        try:
            record = self.codec.decode(data, key)
            payload = record.payload
            name, text, target = payload["e"], payload["t"], payload["k"]
            vector = np.frombuffer(payload["v"], dtype=np.float32)
            if record.kind != "embedding" or payload["p"] != partition:
                raise CorruptEntry("not a semantic vector record of this partition")
            if not isinstance(text, str) or not isinstance(target, str):
                raise CorruptEntry("a semantic vector record without its question")
        except (CorruptEntry, KeyError, TypeError, ValueError) as exc:
            self._skip("record", f"dropped a bad semantic vector record: {exc}")
            return None
        if name != self._name() or vector.shape != (dim,):
            self._skip(
                "foreign",
                f"semantic vectors of the embedder {name!r} are in the store; this cache "
                f"uses {self._name()!r}, and ignores them",
            )
            return None
        return Member(target, text, record.expires), vector

    # -- feeding ---------------------------------------------------------------------------

    def store_steps(self, plan: Any, entry: Entry, store_steps: Any) -> Any:
        """Store the vector of a question whose answer was just stored, and index it.

        :param store_steps: the tiers' ``store_steps``.
        """
        with self._lock:
            pending = self._pending.pop(plan.pkey, None)
        if pending is None:
            return
        query, vector = pending
        record = Entry(
            self._prefix + plan.key + SUFFIX + query.partition,
            entry.created,
            None,
            "embedding",
            {
                "v": vector.astype("float32").tobytes(),
                "e": self._name(),
                "t": query.text,
                "k": plan.key,
                "p": query.partition,
            },
            entry.model,
        )
        yield from store_steps(
            {record.key: record}, plan.write_tiers, plan.ttl, plan.shared_ttl, plan.grace
        )
        searched = False  # by a tier: then not in-process (see the module docstring)
        for tier in plan.write_tiers:
            if (yield from self._searches(tier, vector)):
                item = (record.key, self._space(query.partition), vector.tolist())
                yield PutVectors(tier, int(vector.shape[0]), [item])
                searched = True
        if not searched:
            expires = None if plan.ttl is None else entry.created + plan.ttl
            self._index(query.partition).add(Member(plan.key, query.text, expires), vector)

    def forget(self) -> None:
        """Drop the in-process indexes (after a clear: they are read again from the tiers)."""
        self._indexes.clear()
        self._synced.clear()


def build_matcher(option: Any, registry: Any, namespace: str, codec: Codec, stats: Any) -> Any:
    """Return the matcher of a ``semantic=`` option, or ``None`` when not given.

    :raises ConfigError: see :func:`~llmcache.semantic.config.parse_semantic`.
    """
    from llmcache.semantic.config import parse_semantic

    config = parse_semantic(option)
    if config is None:
        return None
    try:
        import numpy  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "semantic matching needs numpy: pip install 'llmcache[semantic]'"
        ) from exc
    return SemanticMatcher(config, registry, namespace, codec, stats)
