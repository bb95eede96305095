"""Hits through the HTTP-level cache: ``OpenAI(http_client=llmcache.http_client(...))``.

The floor is the same SDK call through an HTTP client whose transport answers at once with
the stored answer's bytes, without any cache logic: what the SDK and the HTTP library cost
anyway. Ours adds routing the request, its key, the memory-tier read and the outcome
headers. Every row checks that the upstream saw no request while it was measured.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx2
from openai import AsyncOpenAI, OpenAI

import llmcache

from .timing import Paired, paired, paired_async
from .upstream import Upstream
from .workload import chat_request

__all__ = ["TARGET", "HttpRow", "measure_http_hits"]

TARGET = 1.2
_JSON = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class HttpRow:
    """One measured HTTP-level hit row."""

    mode: str
    result: Paired
    upstream_calls: int

    @property
    def passed(self) -> bool:
        """Whether the ratio meets the target with no upstream call."""
        return self.result.ratio <= TARGET and self.upstream_calls == 0


class _Stored(httpx2.BaseTransport):
    """The floor's transport: the stored answer's bytes, at once."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        return httpx2.Response(200, headers=_JSON, content=self.body)


class _AsyncStored(httpx2.AsyncBaseTransport):
    """The asyncio twin of :class:`_Stored`."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        return httpx2.Response(200, headers=_JSON, content=self.body)


@dataclass(frozen=True)
class Settings:
    """How long each row is measured."""

    rounds: int = 31
    block: int = 200
    block_seconds: float = 0.04


def _sync(upstream: Upstream, settings: Settings) -> HttpRow:
    params = chat_request()
    http = llmcache.http_client(tiers=["memory://"], namespace="http-hits")
    ours = OpenAI(api_key="sk-bench", base_url=upstream.base_url, http_client=http, max_retries=0)
    body = ours.chat.completions.with_raw_response.create(**params).http_response.content
    floor = OpenAI(
        api_key="sk-bench",
        base_url=upstream.base_url,
        http_client=httpx2.Client(transport=_Stored(body)),
        max_retries=0,
    )
    try:
        create, plain = ours.chat.completions.create, floor.chat.completions.create
        assert create(**params).model_dump() == plain(**params).model_dump()
        before = upstream.count()
        result = paired(
            lambda: create(**params),
            lambda: plain(**params),
            rounds=settings.rounds,
            block=settings.block,
            block_seconds=settings.block_seconds,
        )
        calls = upstream.count() - before
    finally:
        ours.close()
        floor.close()
        http.cache.close()
    return HttpRow("sync", result, calls)


async def _async(upstream: Upstream, settings: Settings) -> HttpRow:
    params = chat_request()
    http = llmcache.async_http_client(tiers=["memory://"], namespace="http-hits")
    ours = AsyncOpenAI(
        api_key="sk-bench", base_url=upstream.base_url, http_client=http, max_retries=0
    )
    raw = await ours.chat.completions.with_raw_response.create(**params)
    floor = AsyncOpenAI(
        api_key="sk-bench",
        base_url=upstream.base_url,
        http_client=httpx2.AsyncClient(transport=_AsyncStored(raw.http_response.content)),
        max_retries=0,
    )
    try:
        create, plain = ours.chat.completions.create, floor.chat.completions.create
        before = upstream.count()
        result = await paired_async(
            lambda: create(**params),
            lambda: plain(**params),
            rounds=settings.rounds,
            block=settings.block,
            block_seconds=settings.block_seconds,
        )
        calls = upstream.count() - before
    finally:
        await ours.close()
        await floor.close()
        await http.cache.close()
    return HttpRow("async", result, calls)


def measure_http_hits(upstream: Upstream, settings: Settings | None, log: Any) -> list[HttpRow]:
    """Measure a memory-tier hit through ``llmcache.http_client``, sync and async."""
    settings = settings or Settings()
    rows = [_sync(upstream, settings), asyncio.run(_async(upstream, settings))]
    for row in rows:
        log(
            f"  HTTP hit {row.mode}: {row.result.ours.median_us:.1f} µs vs floor "
            f"{row.result.floor.median_us:.1f} µs = {row.result.ratio:.3f}x"
        )
    return rows
