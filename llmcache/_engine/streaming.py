"""Stream wrappers: record a live stream for storing, or replay stored chunks.

A recorded stream is stored only when it ran to its end; one that is closed early, raises,
or is dropped half-read is never stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any

from llmcache.providers.base import dump

__all__ = ["AsyncRecordingStream", "AsyncReplayStream", "RecordingStream", "ReplayStream"]


class _CacheAttributes:
    cache_hit: bool = False
    cache_age: float | None = None
    cache_tokens_saved: int = 0
    cache_tier: str | None = None
    cache_key: str = ""
    cache_match: str | None = None
    cache_similarity: float | None = None


class RecordingStream(_CacheAttributes):
    """Pass a live SDK stream through, and hand its chunks to ``on_complete`` at the end.

    Everything else (``response``, ``close``...) is the SDK stream's own.
    """

    def __init__(
        self,
        stream: Any,
        on_complete: Callable[[list[dict[str, Any]]], None],
        dump_chunk: Callable[[Any], dict[str, Any]] = dump,
    ) -> None:
        self._stream = stream
        self._on_complete = on_complete
        self._dump = dump_chunk
        self._chunks: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[Any]:
        for chunk in self._stream:
            self._chunks.append(self._dump(chunk))
            yield chunk
        self._on_complete(self._chunks)

    def __next__(self) -> Any:
        try:
            chunk = next(self._stream)
        except StopIteration:
            self._on_complete(self._chunks)
            raise
        self._chunks.append(self._dump(chunk))
        return chunk

    def __enter__(self) -> RecordingStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying stream (an unfinished one is then never stored)."""
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class AsyncRecordingStream(_CacheAttributes):
    """The asyncio twin of :class:`RecordingStream`."""

    def __init__(
        self,
        stream: Any,
        on_complete: Callable[[list[dict[str, Any]]], Awaitable[None]],
        dump_chunk: Callable[[Any], dict[str, Any]] = dump,
    ) -> None:
        self._stream = stream
        self._on_complete = on_complete
        self._dump = dump_chunk
        self._chunks: list[dict[str, Any]] = []

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for chunk in self._stream:
            self._chunks.append(self._dump(chunk))
            yield chunk
        await self._on_complete(self._chunks)

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            await self._on_complete(self._chunks)
            raise
        self._chunks.append(self._dump(chunk))
        return chunk

    async def __aenter__(self) -> AsyncRecordingStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the underlying stream."""
        await self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class ReplayStream(_CacheAttributes):
    """Stored chunks served as the SDK's chunk objects: iterable and a context manager."""

    def __init__(self, chunks: list[Any]) -> None:
        self._chunks = iter(chunks)

    def __iter__(self) -> Iterator[Any]:
        return self._chunks

    def __next__(self) -> Any:
        return next(self._chunks)

    def __enter__(self) -> ReplayStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the replay."""
        self._chunks = iter(())


class AsyncReplayStream(_CacheAttributes):
    """The asyncio twin of :class:`ReplayStream`."""

    def __init__(self, chunks: list[Any]) -> None:
        self._chunks = iter(chunks)

    def __aiter__(self) -> AsyncReplayStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AsyncReplayStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the replay."""
        self._chunks = iter(())
