"""Record a live server-sent-event stream on its way to the SDK, and store it once complete.

The recorders pass every byte through untouched; beside, they parse the events (the
``data:`` lines of each, joined) into chunk payloads. A stream is complete when the API's
closing marker arrived (``data: [DONE]``, or the endpoint's final event type) or the body
ended cleanly; only then is ``on_complete`` called, once. A stream closed early or broken
is never stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson

__all__ = ["AsyncStreamRecorder", "EventParser", "StreamRecorder"]


class EventParser:
    """Parse server-sent events fed in arbitrary byte pieces into JSON payloads.

    :param end: the ``type`` of the event that completes a stream (``None``: only
        ``data: [DONE]`` or the end of the body do).
    """

    def __init__(self, end: str | None) -> None:
        self.end = end
        self.chunks: list[dict[str, Any]] = []
        self.done = False  # the closing marker arrived
        self.broken = False  # an event's data was not a JSON object: never store
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, piece: bytes) -> None:
        """Take the next bytes of the body."""
        self._buffer += piece
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if not sep:
                return
            self._buffer = rest
            self._line(line.rstrip(b"\r"))

    def _line(self, line: bytes) -> None:
        if not line:  # a blank line dispatches the event
            if self._data:
                self._event(b"\n".join(self._data))
                self._data = []
            return
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        # event:, id:, retry: and comments carry nothing the payloads need

    def _event(self, data: bytes) -> None:
        if data.strip() == b"[DONE]":
            self.done = True
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.broken = True
            return
        if not isinstance(payload, dict):
            self.broken = True
            return
        self.chunks.append(payload)
        if self.end is not None and payload.get("type") == self.end:
            self.done = True

    def finish(self) -> None:
        """Take the end of the body: an event left without its blank line is dispatched."""
        self.feed(b"\n\n")


class StreamRecorder:
    """A byte stream that passes a live body through and hands its chunks on once complete.

    :param stream: the upstream response's byte stream.
    :param parser: parses what passes.
    :param on_complete: called once with the chunk payloads of a complete stream.
    """

    def __init__(
        self,
        stream: Any,
        parser: EventParser,
        on_complete: Callable[[list[dict[str, Any]]], None],
    ) -> None:
        self._stream = stream
        self._parser = parser
        self._on_complete = on_complete
        self._stored = False

    def __iter__(self) -> Iterator[bytes]:
        parser = self._parser
        for piece in self._stream:
            parser.feed(piece)
            if parser.done:
                self._complete()
            yield piece
        parser.finish()
        self._complete()

    def _complete(self) -> None:
        if not self._stored and not self._parser.broken and self._parser.chunks:
            self._stored = True
            self._on_complete(self._parser.chunks)

    def close(self) -> None:
        """Close the upstream body (an unfinished stream is then never stored)."""
        self._stream.close()


class AsyncStreamRecorder:
    """The asyncio twin of :class:`StreamRecorder`."""

    def __init__(
        self,
        stream: Any,
        parser: EventParser,
        on_complete: Callable[[list[dict[str, Any]]], Awaitable[None]],
    ) -> None:
        self._stream = stream
        self._parser = parser
        self._on_complete = on_complete
        self._stored = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parser = self._parser
        async for piece in self._stream:
            parser.feed(piece)
            if parser.done:
                await self._complete()
            yield piece
        parser.finish()
        await self._complete()

    async def _complete(self) -> None:
        if not self._stored and not self._parser.broken and self._parser.chunks:
            self._stored = True
            await self._on_complete(self._parser.chunks)

    async def aclose(self) -> None:
        """Close the upstream body (an unfinished stream is then never stored)."""
        await self._stream.aclose()
