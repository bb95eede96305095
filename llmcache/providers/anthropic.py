"""Response handling for the Anthropic SDK's ``messages.create``.

A streamed message is a sequence of typed events (``message_start``, then for each content
block ``content_block_start``, deltas and ``content_block_stop``, then ``message_delta`` and
``message_stop``). :meth:`Messages.assemble` folds such a sequence into the ``Message`` it
describes, and :meth:`Messages.synthesize` does the reverse, so that streamed and plain calls
of one request share a cache entry.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from anthropic.types import Message, RawMessageStreamEvent

from llmcache.providers.base import EndpointAdapter, Method, Provider, Usage, usage_number

__all__ = ["ANTHROPIC", "Messages"]

# message_delta carries the stop fields; everything else of the message comes with message_start
_STOP_FIELDS = ("stop_reason", "stop_sequence", "stop_details", "container")
_DELTA_USAGE = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "server_tool_use",
    "output_tokens_details",
)
# blocks whose ``input`` arrives as input_json_delta fragments
_JSON_INPUT_BLOCKS = ("tool_use", "server_tool_use", "mcp_tool_use")


def _merge_delta(
    block: dict[str, Any], delta: Mapping[str, Any], index: int, buffers: dict[int, str]
) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + (delta.get("text") or "")
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + (delta.get("thinking") or "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature", "")
    elif kind == "citations_delta":
        citation = delta.get("citation")
        if citation is not None:
            block["citations"] = [*(block.get("citations") or []), citation]
    elif kind == "input_json_delta":
        buffers[index] = buffers.get(index, "") + (delta.get("partial_json") or "")


def _empty_start(block: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Split a finished content block into its start form and the deltas that complete it."""
    kind = block.get("type")
    if kind == "text":
        start = {k: v for k, v in block.items() if k != "citations"}
        start["text"] = ""
        deltas: list[dict[str, Any]] = []
        if block.get("text"):
            deltas.append({"type": "text_delta", "text": block["text"]})
        deltas.extend(
            {"type": "citations_delta", "citation": c} for c in block.get("citations") or ()
        )
        return start, deltas
    if kind == "thinking":
        start = {**block, "thinking": "", "signature": ""}
        deltas = []
        if block.get("thinking"):
            deltas.append({"type": "thinking_delta", "thinking": block["thinking"]})
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        return start, deltas
    if kind in _JSON_INPUT_BLOCKS:
        start = {**block, "input": {}}
        arguments = block.get("input")
        if not arguments:
            return start, []
        partial = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
        return start, [{"type": "input_json_delta", "partial_json": partial}]
    return dict(block), []  # redacted thinking, tool results...: sent whole at the start


class Messages(EndpointAdapter):
    """``messages.create``: a ``Message``, or a stream of ``RawMessageStreamEvent``."""

    endpoint = "messages"
    response_type = Message
    items = "content"
    kind_field = "type"
    kinds = ("message",)
    sse_named = True
    sse_done = b""
    stream_end = "message_stop"
    chunk_type = RawMessageStreamEvent

    def usage(self, payload: Any) -> Usage:
        """Return the token counts of a message.

        ``prompt`` is every input token (uncached, written to and read from the prompt
        cache), so that a response-cache hit counts the whole prompt it saved;
        ``provider_cached`` is ``cache_read_input_tokens`` alone: cache writes cost more
        than plain input and are no saving.
        """
        read = usage_number(payload, "usage", "cache_read_input_tokens")
        written = usage_number(payload, "usage", "cache_creation_input_tokens")
        prompt = usage_number(payload, "usage", "input_tokens") + written + read
        return Usage(prompt, usage_number(payload, "usage", "output_tokens"), read, written)

    def assemble(self, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        """Fold a stream's events into the ``Message`` payload they describe.

        :raises ValueError: the stream has no ``message_start`` event.
        """
        message: dict[str, Any] | None = None
        blocks: dict[int, dict[str, Any]] = {}
        buffers: dict[int, str] = {}
        for event in chunks:
            kind = event.get("type")
            if kind == "message_start":
                message = copy.deepcopy(dict(event.get("message") or {}))
                for index, block in enumerate(message.get("content") or ()):
                    blocks[index] = dict(block)
            elif kind == "content_block_start":
                blocks[event.get("index", len(blocks))] = copy.deepcopy(
                    dict(event.get("content_block") or {})
                )
            elif kind == "content_block_delta":
                index = event.get("index", 0)
                if index in blocks:
                    _merge_delta(blocks[index], event.get("delta") or {}, index, buffers)
            elif kind == "message_delta" and message is not None:
                delta = event.get("delta") or {}
                for field in _STOP_FIELDS:
                    if field in delta and (delta[field] is not None or field != "container"):
                        message[field] = delta[field]
                usage = dict(message.get("usage") or {})
                counts = event.get("usage") or {}
                if counts.get("output_tokens") is not None:
                    usage["output_tokens"] = counts["output_tokens"]
                # the delta's counts are cumulative totals; absent ones keep message_start's
                usage.update({k: counts[k] for k in _DELTA_USAGE if counts.get(k) is not None})
                message["usage"] = usage
        if message is None:
            raise ValueError("the stream carried no message_start event")
        for index, text in buffers.items():
            if text:
                blocks[index]["input"] = json.loads(text)
        message["content"] = [blocks[i] for i in sorted(blocks)]
        return message

    def synthesize(
        self, payload: Mapping[str, Any], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Return the events a stream of this message would have carried."""
        usage = dict(payload.get("usage") or {})
        head = {k: v for k, v in payload.items() if k not in ("content", *_STOP_FIELDS)}
        start = {
            **head,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 0},
        }
        events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
        for index, block in enumerate(payload.get("content") or ()):
            first, deltas = _empty_start(block)
            events.append({"type": "content_block_start", "index": index, "content_block": first})
            events.extend(
                {"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas
            )
            events.append({"type": "content_block_stop", "index": index})
        delta = {field: payload.get(field) for field in ("stop_reason", "stop_sequence")}
        delta.update({f: payload[f] for f in ("stop_details", "container") if f in payload})
        counts = {"output_tokens": usage.get("output_tokens", 0)}
        counts.update({k: usage[k] for k in _DELTA_USAGE if usage.get(k) is not None})
        events.append({"type": "message_delta", "delta": delta, "usage": counts})
        events.append({"type": "message_stop"})
        return events


ANTHROPIC = Provider(
    "anthropic",
    {"messages": Messages()},
    sdk_cache_control=True,
    methods=(Method(("messages",), "create", "messages"),),
    modules=("anthropic",),
    routes=(("/v1/messages", "messages"),),
)
