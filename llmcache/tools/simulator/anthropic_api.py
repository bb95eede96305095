"""Anthropic's messages endpoint, with its prompt cache, tool use and structured output."""

from __future__ import annotations

import json
import uuid
from typing import Any

from llmcache.tools.simulator.common import (
    JSON,
    OVERHEAD,
    Result,
    Seen,
    answer,
    dicts,
    last_user_text,
    pieces,
    request_digest,
    split,
    sse,
    text_of,
    truncate,
    words,
)
from llmcache.tools.simulator.turns import messages_turn

__all__ = ["messages"]


def _units(body: JSON) -> list[tuple[Any, int, bool]]:
    """Flatten tools, system and messages into ``(identity, tokens, has_cache_control)`` units.

    A tool counts the words of its JSON, a block its words (+4 if it opens a message).
    """
    units: list[tuple[Any, int, bool]] = []

    def add(owner: Any, block: JSON, tokens: int) -> None:
        plain = {key: value for key, value in block.items() if key != "cache_control"}
        tokens += words(json.dumps(plain)) if owner == "tool" else words(text_of([block]))
        units.append(([owner, plain], tokens, "cache_control" in block))

    for tool in dicts(body.get("tools")):
        add("tool", tool, 0)
    system = body.get("system")
    system = [{"type": "text", "text": system}] if isinstance(system, str) else system
    for number, block in enumerate(dicts(system)):
        add("system", block, OVERHEAD if number == 0 else 0)
    for message in dicts(body.get("messages")):
        content = message.get("content")
        parts = dicts([{"type": "text", "text": content}] if isinstance(content, str) else content)
        for number, part in enumerate(parts or [{"type": "text", "text": ""}]):
            add(message.get("role"), part, OVERHEAD if number == 0 else 0)
    return units


def messages(seen: Seen, body: JSON) -> Result:
    """Answer ``/v1/messages``: a text block (JSON when a format asks) or a tool_use block."""
    units = _units(body)
    marked = [number for number, (_, _, flagged) in enumerate(units) if flagged]
    prefix = units[: marked[-1] + 1] if marked else []
    prefix_tokens = sum(tokens for _, tokens, _ in prefix)
    identity = json.dumps([unit for unit, _, _ in prefix], sort_keys=True)
    was_seen = bool(prefix) and seen("anthropic", identity)
    digest, turn = request_digest(body), messages_turn(body)
    block: JSON
    if turn.tool is not None:
        block = {"type": "tool_use", "id": f"toolu_{digest}", "name": turn.tool}
        block["input"] = json.loads(turn.arguments)
        stop_reason, output_tokens, text = "tool_use", words(turn.arguments), ""
    else:
        text = answer(digest, last_user_text(dicts(body.get("messages"))))
        text, cut = truncate(turn.structured(text) or text, body.get("max_tokens"))
        block = {"type": "text", "text": text}
        stop_reason, output_tokens = ("max_tokens" if cut else "end_turn"), words(text)
    total = sum(tokens for _, tokens, _ in units)
    created, read = (0, prefix_tokens) if was_seen else (prefix_tokens, 0)
    usage = {"input_tokens": total - prefix_tokens, "output_tokens": output_tokens}
    usage |= {"cache_creation_input_tokens": created, "cache_read_input_tokens": read}
    model = body.get("model") or "sim-claude"
    message: JSON = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant"}
    message |= {"model": model, "content": [block], "stop_sequence": None}
    if not body.get("stream"):
        return message | {"stop_reason": stop_reason, "usage": usage}

    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, **fields}, kind)

    start = message | {"content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}}
    if turn.tool is not None:
        opening = block | {"input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in split(turn.arguments)]
    else:
        opening = block | {"text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces(text)]
    final = {"stop_reason": stop_reason, "stop_sequence": None}
    return [
        event("message_start", message=start),
        event("content_block_start", index=0, content_block=opening),
        event("ping"),
        *(event("content_block_delta", index=0, delta=delta) for delta in deltas),
        event("content_block_stop", index=0),
        event("message_delta", delta=final, usage=usage),
        event("message_stop"),
    ]
