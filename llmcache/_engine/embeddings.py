"""Per-input caching of ``embeddings.create``.

Each input of a list is an entry of its own, keyed as if it had been sent alone, so a
partly cached list sends only the missing inputs upstream and the answer is reassembled
in order. The flow is a generator of steps (tier operations and one :class:`Upstream`
call) that the sync and async engines drive alike.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from llmcache._engine.call import Upstream
from llmcache._engine.planning import Plan, Planner
from llmcache._rules.canonical import keep_request
from llmcache._rules.options import Directives
from llmcache._rules.request import NEVER, CacheRequest
from llmcache._tiers.codec import CorruptEntry, Entry
from llmcache._tiers.ops import Op
from llmcache._tiers.steps import TierLogic
from llmcache._tiers.tier import Found
from llmcache.errors import ConfigError
from llmcache.providers.base import EndpointAdapter, dump, usage_number

__all__ = ["EmbeddingCall", "split_inputs"]


def split_inputs(value: Any) -> tuple[list[Any], bool] | None:
    """Return ``(inputs, single)`` for an ``input`` argument, or ``None`` if it is not one.

    A string or a list of token ids is one input; a list of strings or of token-id lists
    is several.
    """
    if isinstance(value, str):
        return [value], True
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [value], True
        if all(isinstance(v, (str, list)) for v in value):
            return list(value), False
    return None


def _hashable(item: Any) -> Any:
    return tuple(item) if isinstance(item, list) else item


def _check_item(entry: Entry) -> None:
    """Reject an entry that is not one input's embedding."""
    if entry.kind != "embedding" or not isinstance(entry.payload.get("embedding"), (list, str)):
        raise CorruptEntry("entry is not an embedding")


@dataclass
class EmbeddingCall:
    """One ``embeddings.create`` call, planned per input."""

    plans: list[Plan]
    items: list[Any]
    params: dict[str, Any]
    single: bool
    keep_requests: bool = False  # each entry carries its input's canonical request

    @classmethod
    def prepare(
        cls, planner: Planner, kwargs: Mapping[str, Any]
    ) -> tuple[dict[str, Any], EmbeddingCall | None]:
        """Plan every input; ``None`` (with the arguments) when the call bypasses the cache."""
        return cls.prepare_request(planner, *planner.split("embeddings", kwargs))

    @classmethod
    def prepare_request(
        cls,
        planner: Planner,
        params: dict[str, Any],
        request: CacheRequest,
        directives: Directives,
    ) -> tuple[dict[str, Any], EmbeddingCall | None]:
        """:meth:`prepare` for a call already split into arguments, request and directives."""
        split = split_inputs(params.get("input"))
        ttl = planner.ttl(request, directives)
        if split is None or ttl is NEVER:
            return params, None
        items, single = split
        plans: list[Plan] = []
        by_item: dict[Any, str] = {}
        for item in items:
            one = CacheRequest(
                "embeddings",
                {**params, "input": item},
                request.options,
                request.namespace,
                request.provider,
            )
            key = planner.key(one)
            if key is None:
                return params, None
            by_item.setdefault(_hashable(item), key)
            plans.append(planner.plan_for(one, directives, key, ttl))
        if len(set(by_item.values())) != len(by_item):
            raise ConfigError(
                "the key strategy gives several different inputs the same key; "
                "it cannot cache a list of embedding inputs"
            )
        return params, cls(plans, items, params, single, planner.keep_requests)

    def steps(
        self, tiers: TierLogic, adapter: EndpointAdapter
    ) -> Generator[Op | Upstream, Any, tuple[dict[str, Any], list[Found | None], Any]]:
        """Look up every input, fetch the missing ones, store them; return the answer.

        Returns ``(payload, found, upstream_response)``; ``found`` is aligned with the inputs.
        """
        first = self.plans[0]
        pkeys = [p.pkey for p in self.plans]
        found: list[Found | None] = [None] * len(pkeys)
        if first.read_tiers:
            found = yield from tiers.lookup_many_steps(pkeys, first.read_tiers, _check_item)
        missing: dict[str, int] = {}
        for index, hit in enumerate(found):
            if hit is None:
                missing.setdefault(pkeys[index], index)
        if first.directives.only_if_cached and missing:
            return {}, found, None
        entries: dict[str, Entry] = {f.entry.key: f.entry for f in found if f is not None}
        response = None
        if missing:
            wanted = [self.items[i] for i in missing.values()]
            response = yield Upstream(
                {**self.params, "input": wanted[0] if self.single else wanted}
            )
            fresh = self._entries(dump(response), list(missing), adapter)
            if self.keep_requests:
                for plan in self.plans:
                    if plan.pkey in fresh:
                        keep_request(fresh[plan.pkey], plan.request)
            entries.update(fresh)
            if first.write_tiers:
                yield from tiers.store_steps(
                    fresh, first.write_tiers, first.ttl, first.shared_ttl, first.grace
                )
        return self._assemble(pkeys, entries), found, response

    def _entries(
        self, payload: Mapping[str, Any], pkeys: list[str], adapter: EndpointAdapter
    ) -> dict[str, Entry]:
        data = sorted(payload.get("data") or (), key=lambda d: d.get("index", 0))
        if len(data) != len(pkeys):
            raise ValueError(
                f"the upstream returned {len(data)} embeddings for {len(pkeys)} inputs"
            )
        tokens = usage_number(payload, "usage", "prompt_tokens")
        share, extra = divmod(tokens, len(pkeys))
        model = adapter.model(payload)
        now = time.time()
        return {
            pkey: Entry(
                pkey,
                now,
                None,
                "embedding",
                {k: v for k, v in item.items() if k != "index"},
                model,
                share + (1 if n < extra else 0),
            )
            for n, (pkey, item) in enumerate(zip(pkeys, data, strict=True))
        }

    def _assemble(self, pkeys: list[str], entries: Mapping[str, Entry]) -> dict[str, Any]:
        chosen = [entries[p] for p in pkeys]
        tokens = sum(e.prompt_tokens for e in chosen)
        return {
            "object": "list",
            "model": chosen[0].model or self.params.get("model", ""),
            "data": [{**e.payload, "index": i} for i, e in enumerate(chosen)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
