"""The request pipeline of the HTTP-level cache: the wrapper's engine, answering in bytes.

:class:`SyncHttpEngine` and :class:`AsyncHttpEngine` are the wrapper's engines with the few
steps that differ when answers are HTTP responses instead of SDK objects: a hit is the
stored JSON text (or server-sent events for a stream) with outcome headers; a miss is the
upstream's response passed through, stored when it is an answer of the endpoint; an
upstream error is handed back as it came and never stored. Planning, lookups, promotion,
single-flight, directives, statistics and plugins are the engine's own, unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

import orjson

from llmcache._engine.async_engine import AsyncEngine
from llmcache._engine.call import Call
from llmcache._engine.embeddings import EmbeddingCall
from llmcache._engine.engine import Engine, SyncEngine
from llmcache._engine.planning import Plan
from llmcache._tiers.codec import CorruptEntry, Entry, describe_failure
from llmcache._tiers.tier import Found, staleness
from llmcache.http.sse import AsyncStreamRecorder, EventParser, StreamRecorder
from llmcache.providers.base import EndpointAdapter, compact_json

__all__ = ["AsyncHttpEngine", "Passthrough", "SyncHttpEngine"]

JSON_TYPE = b"application/json"
SSE_TYPE = b"text/event-stream; charset=utf-8"


class Passthrough(Exception):
    """An upstream answer the cache does not store (an error status, a body that is not an
    answer of the endpoint): the caller gets it as it came."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"upstream answered {response.status_code}")
        self.response = response


def outcome_headers(
    status: str, key: str, *, entry: Entry | None = None, tier: str | None = None
) -> list[tuple[bytes, bytes]]:
    """Return the ``llmcache-*`` response headers of a call's outcome."""
    headers = [(b"llmcache-status", status.encode())]
    if key:
        headers.append((b"llmcache-key", key.encode()))
    if entry is not None:
        headers.append((b"age", b"%d" % max(0, int(time.time() - entry.created))))
    if tier is not None:
        headers.append((b"llmcache-tier", tier.encode()))
    return headers


@functools.cache
def _stream_type(base: type[Any], recorder: type[Any]) -> type[Any]:
    """Return ``recorder`` as a subclass of the HTTP library's byte-stream type ``base``
    (httpx checks that a transport's response body is one)."""
    return type(recorder.__name__, (recorder, base), {})


def mark_response(response: Any, status: str, key: str) -> Any:
    """Add the outcome headers of a miss, a bypass or a passed-through answer."""
    for name, value in outcome_headers(status, key):
        response.headers[name.decode()] = value.decode()
    return response


class _HttpAnswers(Engine):
    """What differs when answers are HTTP responses (mixed into both engines).

    :ivar lib: the HTTP library (``httpx`` or ``httpx2``) whose responses are built.
    """

    lib: Any

    def load(self, adapter: EndpointAdapter, entry: Entry) -> Any:
        """Return the JSON text of a stored answer, checked to be one of this endpoint.

        :raises CorruptEntry: the entry is not an answer of this endpoint.
        """
        try:
            if entry.kind == "json":
                body, data = entry.payload, orjson.loads(entry.payload)
            elif entry.kind == "response":
                data = entry.payload
                body = orjson.dumps(data)
            elif entry.kind == "chunks":
                data = adapter.assemble(entry.payload)
                body = orjson.dumps(data)
            else:
                raise ValueError(f"a {entry.kind!r} entry is not a {adapter.endpoint} answer")
            if not adapter.shaped(data):
                raise ValueError(f"not a {adapter.endpoint} answer")
        except Exception as exc:
            raise CorruptEntry(
                f"entry is not a {adapter.endpoint} answer: {describe_failure(exc)}"
            ) from exc
        return body

    def render(self, plan: Plan, adapter: EndpointAdapter, entry: Entry, stream: bool) -> Any:
        """Return the body of a hit: JSON text, or the events of a replayed stream."""
        body = self.load(adapter, entry)
        if not stream:
            return body
        try:
            params = plan.request.params
            chunks = (
                adapter.replay(entry.payload, params)
                if entry.kind == "chunks"
                else adapter.synthesize(orjson.loads(body), params)
            )
            return adapter.sse(chunks)
        except Exception as exc:
            raise CorruptEntry(
                f"entry is not a {adapter.endpoint} stream: {describe_failure(exc)}"
            ) from exc

    def hand_over(self, call: Call, served: Any, entry: Entry, tier: str | None) -> Any:
        """Return a hit's response: its body, with the outcome headers."""
        headers = [(b"content-type", SSE_TYPE if call.stream else JSON_TYPE)]
        headers += outcome_headers("hit", call.plan.key, entry=entry, tier=tier)
        return self.lib.Response(200, headers=headers, content=served)

    def semantic_hit(self, call: Call, near: Any) -> Any:
        """Count a semantic hit and return its response, with its match headers."""
        found = near.found
        response = self.hit(call, found.entry, found.tier, value=found.value)
        self.stats.semantic_hit()
        response.headers["llmcache-key"] = near.key
        response.headers["llmcache-match"] = "semantic"
        response.headers["llmcache-similarity"] = f"{near.similarity:.4f}"
        return response

    def stale_hit(self, call: Call, found: Found) -> Any:
        """Return a found entry's response; a stale one (``stale-*`` directives) says so."""
        response = super().stale_hit(call, found)
        if staleness(found.entry, time.time(), call.plan.max_age) > 0:
            response.headers["llmcache-status"] = "stale"
        return response

    def fresh_response(
        self,
        response: Any,
        adapter: EndpointAdapter,
        key: str,
        *,
        stream: bool = False,
        payload: Any = None,
    ) -> Any:
        """Count what the provider's prompt cache reported and mark the upstream's response."""
        if not stream and response.status_code < 300:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                self.count_provider_cache(adapter, orjson.loads(response.content))
        return mark_response(response, "miss" if key else "bypass", key)

    def entry_of_reply(self, call: Call, reply: Any) -> tuple[Any, Entry, bool]:
        """Return the upstream's response and the entry of its JSON text.

        :raises Passthrough: an error status, or a body that is not an answer of the
            endpoint: handed to the caller, never stored.
        """
        if reply.status_code >= 300:
            raise Passthrough(reply)
        body = reply.content
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Passthrough(reply) from None
        if not call.adapter.shaped(data):
            raise Passthrough(reply)
        return reply, self._entry(call.plan, call.adapter, data, "json", compact_json(body)), True

    def stream_response(self, live: Any, plan: Plan, stream: Any) -> Any:
        """Return the upstream's streamed response with ``stream`` as its body."""
        response = self.lib.Response(
            live.status_code, headers=live.headers, stream=stream, extensions=live.extensions
        )
        return mark_response(response, "miss", plan.key)

    def embedding_result(
        self,
        call: EmbeddingCall,
        adapter: EndpointAdapter,
        result: tuple[dict[str, Any], list[Found | None], Any],
        started: float,
    ) -> Any:
        """Count a per-input embeddings call and return its response."""
        return self.embeddings_response(*self.count_embeddings(call, result, started))

    def embeddings_response(self, payload: dict[str, Any], outcome: dict[str, Any]) -> Any:
        """Return the response of a per-input embeddings call."""
        if outcome["hit"]:
            created = time.time() - outcome["age"]
            entry = Entry("", created, None, "response", payload)
            headers = outcome_headers("hit", outcome["key"], entry=entry, tier=outcome["tier"])
        else:
            headers = outcome_headers("miss", outcome["key"])
        headers.append((b"content-type", JSON_TYPE))
        return self.lib.Response(200, headers=headers, content=orjson.dumps(payload))


class SyncHttpEngine(_HttpAnswers, SyncEngine):
    """The HTTP-level cache's pipeline for blocking transports."""

    def __init__(self, lib: Any, *args: Any, **kwargs: Any) -> None:
        self.lib = lib
        super().__init__(*args, **kwargs)

    def record_stream(self, call: Call, live: Any) -> Any:
        """Pass a streamed answer through, stored once it ran to its end."""
        if live.status_code >= 300:
            return mark_response(live, "miss", call.plan.key)
        parser = EventParser(call.adapter.stream_end)
        recorder = _stream_type(self.lib.SyncByteStream, StreamRecorder)(
            live.stream, parser, functools.partial(self._store, call)
        )
        return self.stream_response(live, call.plan, recorder)


class AsyncHttpEngine(_HttpAnswers, AsyncEngine):
    """The HTTP-level cache's pipeline for asyncio transports."""

    def __init__(self, lib: Any, *args: Any, **kwargs: Any) -> None:
        self.lib = lib
        super().__init__(*args, **kwargs)

    def record_stream(self, call: Call, live: Any) -> Any:
        """Pass a streamed answer through, stored once it ran to its end."""
        if live.status_code >= 300:
            return mark_response(live, "miss", call.plan.key)

        async def store(chunks: list[dict[str, Any]]) -> None:
            await self._store(call, chunks)

        parser = EventParser(call.adapter.stream_end)
        recorder = _stream_type(self.lib.AsyncByteStream, AsyncStreamRecorder)
        return self.stream_response(live, call.plan, recorder(live.stream, parser, store))
