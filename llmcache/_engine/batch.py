"""``batch_completions``: many chat requests through the cache, concurrently and deduplicated.

Every request of a batch is planned before any upstream call, so that a malformed item or a
bad option fails the whole batch at once. Requests with the same physical key and the same
``cache_*`` options form one *call*: it goes through the cached pipeline once (a hit, or one
upstream request) and the other positions get their own copy of its answer, marked as hits
(``cache_hit=True``, ``cache_tier=None``, counted as ``coalesced`` in ``stats()``, as a call
that waited on an identical in-flight call is). Requests that bypass the cache (``no-store``,
a TTL policy's NEVER, ``enable_cache=False``) are never merged.

Calls run on at most ``max_concurrency`` worker threads (sync clients) or under a semaphore
of that size (async clients). Results come back in request order. With
``return_exceptions=True`` a failed call's exception takes the place of its results; without,
the first error to occur is raised once the calls already in flight have finished (their
answers are cached, not lost) and the calls not yet started are dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from llmcache._engine.call import Call
from llmcache._tiers.codec import Entry
from llmcache._wrapper.resources import CachedResource
from llmcache.errors import ConfigError, MissingExtraError
from llmcache.providers.base import dump

__all__ = ["run_batch", "run_batch_async"]

_SKIPPED: Any = object()  # a call dropped because an earlier one failed


@dataclasses.dataclass(slots=True)
class _Call:
    """One distinct call of a batch and the request positions that share its answer."""

    kwargs: dict[str, Any]
    plan: Any  # the planner's Plan, or None when the request bypasses the cache
    positions: list[int]
    entry: Entry | None = None  # built once, when duplicates need copies of the answer


Outcome = tuple[_Call, Any, BaseException | None]


def _target(client: Any) -> tuple[str, CachedResource]:
    if "messages" in client._sdk.adapters:
        endpoint, resource = "messages", getattr(client, "messages", None)
    else:
        chat = getattr(client, "chat", None)
        endpoint, resource = "chat.completions", getattr(chat, "completions", None)
    if not isinstance(resource, CachedResource):
        raise ConfigError(
            f"batch_completions needs a client with a cached {endpoint}.create; "
            f"{type(client.wrapped).__name__} has none"
        )
    return endpoint, resource


def _progress_bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingExtraError("batch_completions(progress=True)", "progress", "tqdm") from exc
    return tqdm(total=total, desc="llmcache batch", unit="req")


class _Batch:
    """The planned calls of one batch and the results gathered so far."""

    def __init__(
        self,
        client: Any,
        requests: Iterable[Mapping[str, Any]],
        *,
        model: str | None = None,
        enable_cache: bool = True,
        max_concurrency: int = 8,
        progress: bool = False,
        common: Mapping[str, Any] | None = None,
    ) -> None:
        common = common or {}
        if (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be a whole number >= 1, not {max_concurrency!r}"
            )
        if isinstance(requests, (str, bytes, Mapping)):
            raise ValueError(
                "requests must be a list of message dicts or dicts of create arguments, "
                f"not a {type(requests).__name__}"
            )
        self.max_concurrency = max_concurrency
        self.engine = client._engine
        self.endpoint, resource = _target(client)
        self.create: Callable[..., Any] = resource.create
        self.sdk_cache_control = bool(client._sdk.sdk_cache_control)
        self.calls: list[_Call] = []
        shared: dict[tuple[str, Any], _Call] = {}
        count = 0
        for index, item in enumerate(requests):
            count += 1
            kwargs = self._kwargs(index, item, model, enable_cache, common)
            try:
                _, plan = self.engine.planner.plan(self.endpoint, kwargs)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"batch item {index}: {exc}") from exc
            if plan is None:
                self.calls.append(_Call(kwargs, None, [index]))
                continue
            same = (plan.pkey, plan.request.options)
            if same in shared:
                shared[same].positions.append(index)
            else:
                shared[same] = call = _Call(kwargs, plan, [index])
                self.calls.append(call)
        self.results: list[Any] = [None] * count
        self.first_error: BaseException | None = None
        self.hits = self.misses = self.errors = 0
        self.started = time.perf_counter()
        self.bar = _progress_bar(count) if progress and count else None

    def _kwargs(
        self,
        index: int,
        item: Any,
        model: str | None,
        enable_cache: bool,
        common: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Return the ``create`` arguments of one batch item, checked."""
        if not isinstance(item, Mapping):
            raise ValueError(
                f"batch item {index} must be a message dict {{'role': ..., 'content': ...}} "
                f"or a dict of create arguments, not {type(item).__name__} {item!r:.80}"
            )
        if "messages" in item:
            own = dict(item)
        elif isinstance(item.get("role"), str) and "content" in item:
            own = {"messages": [dict(item)]}
        else:
            raise ValueError(
                f"batch item {index} is neither a message dict (with 'role' and 'content') nor "
                f"a dict of create arguments (with 'messages'); its keys: "
                f"{', '.join(sorted(map(str, item))) or 'none'}"
            )
        kwargs = dict(common)
        if model is not None:
            kwargs["model"] = model
        kwargs.update(own)
        if not kwargs.get("model"):
            raise ValueError(
                f"batch item {index} names no model: pass model=... to batch_completions "
                "or put 'model' in the item"
            )
        if self.endpoint == "messages" and "max_tokens" not in kwargs:
            raise ValueError(
                f"batch item {index} has no max_tokens, which messages.create requires: "
                "pass max_tokens=... to batch_completions or put it in the item"
            )
        if kwargs.get("stream"):
            raise ValueError(
                f"batch item {index} asks for stream=True; batch_completions returns whole "
                "responses, so leave stream out"
            )
        if not enable_cache:
            control = kwargs.get("cache_control")
            if self.sdk_cache_control and isinstance(control, Mapping):
                # the SDK's own cache_control still reaches the API, in the request body
                kwargs["extra_body"] = {
                    **(kwargs.get("extra_body") or {}),
                    "cache_control": control,
                }
                control = None
            if control is None or isinstance(control, str):
                kwargs["cache_control"] = "no-store"
        return kwargs

    # -- gathering ---------------------------------------------------------------------

    def settle(self, call: _Call, result: Any, error: BaseException | None) -> None:
        """Record what one call produced, for every position that shares it."""
        if error is not None:
            for position in call.positions:
                self.results[position] = error
            self.errors += len(call.positions)
            if self.first_error is None:
                self.first_error = error
        else:
            first, *others = call.positions
            self.results[first] = result
            if getattr(result, "cache_hit", False):
                self.hits += 1
            else:
                self.misses += 1
            for position in others:
                self.results[position] = self._copy(call, result)
            self.hits += len(others)
        if self.bar is not None:
            self.bar.set_postfix(
                hits=self.hits, misses=self.misses, errors=self.errors, refresh=False
            )
            self.bar.update(len(call.positions))

    def _copy(self, call: _Call, result: Any) -> Any:
        """Return a duplicate's own SDK object for a call's answer, counted as a hit."""
        adapter = self.engine.adapter(self.endpoint)
        if call.entry is None:
            entry = self.engine.entry_from_payload(call.plan, adapter, dump(result))
            age = getattr(result, "cache_age", None) or 0.0
            call.entry = dataclasses.replace(entry, created=entry.created - age)
        # the batch reaches the upstream through the cached create, here as everywhere
        planned = Call(call.plan, adapter, call.kwargs, False, self.started, self.create)
        return self.engine.hit(planned, call.entry, None, coalesced=True)

    def outcome(self, return_exceptions: bool) -> list[Any]:
        """Return the results in request order, or raise the first error."""
        if self.first_error is not None and not return_exceptions:
            raise self.first_error
        return self.results

    def close(self) -> None:
        """Close the progress bar, if any."""
        if self.bar is not None:
            self.bar.close()


def run_batch(
    client: Any,
    requests: Iterable[Mapping[str, Any]],
    *,
    return_exceptions: bool = False,
    **options: Any,
) -> list[Any]:
    """Serve a batch on a sync client, on at most ``max_concurrency`` worker threads.

    See :meth:`llmcache.CachedClient.batch_completions`.
    """
    batch = _Batch(client, requests, **options)
    max_concurrency = batch.max_concurrency
    stop = threading.Event()

    def work(call: _Call) -> Outcome:
        if stop.is_set():
            return call, _SKIPPED, None
        try:
            return call, batch.create(**call.kwargs), None
        except Exception as exc:
            if not return_exceptions:
                stop.set()  # before this worker takes the next call
            return call, None, exc

    try:
        if batch.calls:
            workers = min(max_concurrency, len(batch.calls))
            with ThreadPoolExecutor(workers, thread_name_prefix="llmcache-batch") as pool:
                futures = [pool.submit(work, call) for call in batch.calls]
                try:
                    for future in as_completed(futures):
                        call, result, error = future.result()
                        if result is not _SKIPPED:
                            batch.settle(call, result, error)
                except BaseException:  # interrupted: start nothing new
                    stop.set()
                    raise
    finally:
        batch.close()
    return batch.outcome(return_exceptions)


async def run_batch_async(
    client: Any,
    requests: Iterable[Mapping[str, Any]],
    *,
    return_exceptions: bool = False,
    **options: Any,
) -> list[Any]:
    """Serve a batch on an async client, at most ``max_concurrency`` calls at a time.

    See :meth:`llmcache.AsyncCachedClient.batch_completions`.
    """
    batch = _Batch(client, requests, **options)
    max_concurrency = batch.max_concurrency
    gate = asyncio.Semaphore(max_concurrency)
    stop = asyncio.Event()

    async def work(call: _Call) -> Outcome:
        async with gate:
            if stop.is_set():
                return call, _SKIPPED, None
            try:
                return call, await batch.create(**call.kwargs), None
            except Exception as exc:
                if not return_exceptions:
                    stop.set()  # before the next call passes the gate
                return call, None, exc

    tasks = [asyncio.ensure_future(work(call)) for call in batch.calls]
    try:
        for done in asyncio.as_completed(tasks):
            call, result, error = await done
            if result is not _SKIPPED:
                batch.settle(call, result, error)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()  # only unfinished ones: we were cancelled ourselves
        await asyncio.gather(*tasks, return_exceptions=True)
        batch.close()
    return batch.outcome(return_exceptions)
