"""OpenAI's endpoints: chat.completions, completions, embeddings and responses."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import time
import uuid
from typing import Any

from llmcache.tools.simulator.common import (
    DONE,
    JSON,
    Result,
    Seen,
    answer,
    dicts,
    envelope,
    last_user_text,
    message_tokens,
    pieces,
    request_digest,
    split,
    sse,
    truncate,
    words,
)
from llmcache.tools.simulator.turns import chat_turn, responses_turn

__all__ = ["chat", "completions", "embeddings", "responses"]

_PREFIX_ROLES = ("system", "developer")


def _usage(prompt: int, completion: int, cached: int | None = None) -> JSON:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    return usage if cached is None else usage | {"prompt_tokens_details": {"cached_tokens": cached}}


def _prompt_cache(seen: Seen, body: JSON, messages: list[JSON]) -> tuple[int, int]:
    """Return ``(cached, written)`` prompt tokens: the prefix is read if seen before, else written.

    The prefix is the system/developer messages plus the tools (which count to its identity);
    it is remembered per prompt_cache_key.
    """
    prefix = [m for m in messages if m.get("role") in _PREFIX_ROLES]
    if not prefix and not body.get("tools"):
        return 0, 0
    identity = json.dumps([body.get("prompt_cache_key"), prefix, body.get("tools")], sort_keys=True)
    tokens = message_tokens(prefix)
    return (tokens, 0) if seen("openai", identity) else (0, tokens)


def chat(seen: Seen, body: JSON) -> Result:
    """Answer ``/chat/completions``: text, structured JSON or a tool call, whole or streamed."""
    messages = dicts(body.get("messages"))
    digest, prompt = request_digest(body), last_user_text(messages)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    turn = chat_turn(body)
    choices: list[JSON] = []
    for index in range(max(1, int(body.get("n") or 1))):
        message: JSON = {"role": "assistant", "content": None, "refusal": None}
        if turn.tool is not None:
            call = {"id": f"call_{digest}{index}", "type": "function"}
            function = {"name": turn.tool, "arguments": turn.arguments}
            message["tool_calls"] = [call | {"function": function}]
            finish = "tool_calls"
        else:
            text = answer(digest, prompt, index)
            text, cut = truncate(turn.structured(text) or text, limit)
            message["content"], finish = text, "length" if cut else "stop"
        choices.append({"index": index, "message": message, "finish_reason": finish})
    completion = sum(words(c["message"]["content"] or turn.arguments) for c in choices)
    cached, _ = _prompt_cache(seen, body, messages)
    usage = _usage(message_tokens(messages), completion, cached)
    if not body.get("stream"):
        head = envelope("chatcmpl-", "chat.completion", body)
        return head | {"choices": [c | {"logprobs": None} for c in choices], "usage": usage}
    base = envelope("chatcmpl-", "chat.completion.chunk", body)

    def chunk(index: int, delta: JSON, finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(base | {"choices": [choice]})

    events: list[bytes] = []
    for choice in choices:
        index, message = choice["index"], choice["message"]
        events.append(chunk(index, {"role": "assistant", "content": ""}))
        if "tool_calls" in message:
            call = message["tool_calls"][0]
            opening = call | {"function": call["function"] | {"arguments": ""}}
            events.append(chunk(index, {"tool_calls": [{"index": 0} | opening]}))
            for piece in split(call["function"]["arguments"]):
                delta = {"index": 0, "function": {"arguments": piece}}
                events.append(chunk(index, {"tool_calls": [delta]}))
        else:
            events += [chunk(index, {"content": piece}) for piece in pieces(message["content"])]
        events.append(chunk(index, {}, choice["finish_reason"]))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(sse(base | {"choices": [], "usage": usage}))
    return [*events, DONE]


def _inputs(value: Any) -> list[tuple[Any, str, int]]:
    """Split a prompt or embeddings input (text, tokens or lists of them) into entries."""
    if isinstance(value, str):
        return [(value, value, words(value))]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [(value, "", len(value))]
    if isinstance(value, list):
        return [entry for element in value for entry in _inputs(element)]
    return []


def completions(seen: Seen, body: JSON) -> Result:
    """Answer ``/completions``: one text per prompt and per ``n``, whole or streamed."""
    prompts = _inputs(body.get("prompt", "")) or [("", "", 0)]
    digest, n = request_digest(body), max(1, int(body.get("n") or 1))
    choices: list[JSON] = []
    for number, (_, prompt, _) in enumerate(prompts):
        for variant in range(n):
            text, cut = truncate(answer(digest, prompt, variant), body.get("max_tokens"))
            choice: JSON = {"text": text, "index": number * n + variant, "logprobs": None}
            choices.append(choice | {"finish_reason": "length" if cut else "stop"})
    completion = sum(words(choice["text"]) for choice in choices)
    usage = _usage(sum(tokens for _, _, tokens in prompts), completion)
    base = envelope("cmpl-", "text_completion", body)
    if not body.get("stream"):
        return base | {"choices": choices, "usage": usage}
    events: list[bytes] = []
    for choice in choices:
        parts = [*pieces(choice["text"]), ""]
        for number, piece in enumerate(parts):
            finish = choice["finish_reason"] if number == len(parts) - 1 else None
            part = {"text": piece, "index": choice["index"], "logprobs": None}
            events.append(sse(base | {"choices": [part | {"finish_reason": finish}]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(sse(base | {"choices": [], "usage": usage}))
    return [*events, DONE]


def _vector(item: Any, dimensions: int) -> list[float]:
    """Derive a unit vector of ``dimensions`` floats in [-1, 1] from the sha256 of ``item``."""
    seed = json.dumps(item, sort_keys=True).encode("utf-8")
    blocks = (dimensions * 4 + 31) // 32
    raw = b"".join(hashlib.sha256(seed + i.to_bytes(4, "little")).digest() for i in range(blocks))
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dimensions}I", raw[: dimensions * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embeddings(seen: Seen, body: JSON) -> Result:
    """Answer ``/embeddings``: one deterministic unit vector per input."""
    dimensions = int(body.get("dimensions") or 8)
    data: list[JSON] = []
    tokens = 0
    for index, (item, _, count) in enumerate(_inputs(body.get("input", ""))):
        vector: Any = _vector(item, dimensions)
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens += count
    model = str(body.get("model") or "sim-embedding")
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def responses(seen: Seen, body: JSON) -> Result:
    """Answer ``/responses``: a message (text or structured JSON) or a function call."""
    raw, instructions = body.get("input", ""), body.get("instructions")
    messages = dicts([{"role": "user", "content": raw}] if isinstance(raw, str) else raw)
    if isinstance(instructions, str):
        messages.insert(0, {"role": "system", "content": instructions})
    limit, rid, digest = body.get("max_output_tokens"), uuid.uuid4().hex, request_digest(body)
    turn = responses_turn(body)
    text, cut = "", False
    if turn.tool is not None:
        item: JSON = {"type": "function_call", "id": f"fc_{digest}", "call_id": f"call_{digest}"}
        item |= {"name": turn.tool, "arguments": turn.arguments, "status": "completed"}
        tokens_out = words(turn.arguments)
    else:
        text = answer(digest, last_user_text(messages))
        text, cut = truncate(turn.structured(text) or text, limit)
        part: JSON = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {"type": "message", "id": f"msg_{rid}", "status": "completed", "role": "assistant"}
        item["content"] = [part]
        tokens_out = words(text)
    tokens_in = message_tokens(messages)
    cached, written = _prompt_cache(seen, body, messages)
    status = "incomplete" if cut else "completed"
    details = {"cached_tokens": cached, "cache_write_tokens": written}
    usage = {"input_tokens": tokens_in, "input_tokens_details": details}
    usage |= {"output_tokens": tokens_out, "output_tokens_details": {"reasoning_tokens": 0}}
    response: JSON = {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": instructions,
        "max_output_tokens": limit,
        "metadata": body.get("metadata") or {},
        "model": body.get("model") or "sim-model",
        "output": [item],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "usage": usage | {"total_tokens": tokens_in + tokens_out},
    }
    if not body.get("stream"):
        return response
    pending = response | {"status": "in_progress", "output": [], "usage": None}
    pending["incomplete_details"] = None
    return _response_events(pending, item, response)


def _response_events(pending: JSON, item: JSON, response: JSON) -> list[bytes]:
    """Return the Responses stream of one output ``item``: created ... completed."""
    sequence = iter(range(1 << 30))

    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(sequence), **fields}, kind)

    opening = [
        event("response.created", response=pending),
        event("response.in_progress", response=pending),
    ]
    at: JSON = {"item_id": item["id"], "output_index": 0}
    started = item | {"status": "in_progress"}
    if item["type"] == "function_call":
        arguments = item["arguments"]
        body = [
            event("response.output_item.added", output_index=0, item=started | {"arguments": ""}),
            *(
                event("response.function_call_arguments.delta", **at, delta=piece)
                for piece in split(arguments)
            ),
            event("response.function_call_arguments.done", **at, arguments=arguments),
        ]
    else:
        [part] = item["content"]
        at["content_index"] = 0
        text = part["text"]
        body = [
            event("response.output_item.added", output_index=0, item=started | {"content": []}),
            event("response.content_part.added", **at, part=part | {"text": ""}),
            *(
                event("response.output_text.delta", **at, delta=p, logprobs=[])
                for p in pieces(text)
            ),
            event("response.output_text.done", **at, text=text, logprobs=[]),
            event("response.content_part.done", **at, part=part),
        ]
    return [
        *opening,
        *body,
        event("response.output_item.done", output_index=0, item=item),
        event(f"response.{response['status']}", response=response),
    ]
