"""Pieces every simulated endpoint shares: digests, token counts, text answers, SSE framing."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]
Result = JSON | list[bytes]  # a JSON answer, or the SSE events of a streamed answer
Seen = Callable[[str, str], bool]  # remembers a prompt prefix; says whether it was seen before
Endpoint = Callable[[Seen, JSON], Result]

_TRANSPORT_KEYS = "stream stream_options timeout user metadata prompt_cache_key safety_identifier"
_DIGEST_EXCLUDED = frozenset(_TRANSPORT_KEYS.split())  # keys that never change an answer
OVERHEAD = 4  # tokens added per message
DONE = b"data: [DONE]\n\n"


def request_digest(body: dict[str, Any]) -> str:
    """Return the 12-hex-digit digest the simulator embeds in its answer to ``body``.

    It hashes the canonical JSON of the body without stream, stream_options, timeout, user,
    metadata, prompt_cache_key and safety_identifier.
    """
    kept = {key: value for key, value in body.items() if key not in _DIGEST_EXCLUDED}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def words(text: str) -> int:
    """Count whitespace-separated words: the simulator's token count."""
    return len(text.split())


def text_of(content: Any) -> str:
    """Return the text of a message content: a string or a list of parts carrying ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return " ".join(text for text in texts if isinstance(text, str))
    return ""


def dicts(value: Any) -> list[JSON]:
    """Return the dicts of a list (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def message_tokens(messages: list[JSON]) -> int:
    """Count the words of every message's content (or tool output) plus the overhead."""
    return sum(words(text_of(m.get("content", m.get("output")))) + OVERHEAD for m in messages)


def last_user_text(messages: list[JSON]) -> str:
    """Return the text of the last user message (empty without one)."""
    users = [m.get("content") for m in messages if m.get("role") == "user"]
    return text_of(users[-1]) if users else ""


def answer(digest: str, prompt: str, variant: int = 0) -> str:
    """Build the deterministic answer: the digest, then a sentence echoing the prompt."""
    snippet = " ".join(prompt.split()[:12])
    sentence = f"Simulated reply to: {snippet}" if snippet else "Simulated reply."
    return f"[{digest}] {sentence}" + (f" (variant {variant + 1})" if variant else "")


def truncate(text: str, limit: Any) -> tuple[str, bool]:
    """Cut ``text`` to ``limit`` words (at least one); report whether it was cut."""
    parts = text.split(" ")
    if not isinstance(limit, int) or isinstance(limit, bool) or len(parts) <= max(1, limit):
        return text, False
    return " ".join(parts[: max(1, limit)]), True


def pieces(text: str) -> list[str]:
    """Split ``text`` into one piece per word whose concatenation is exactly ``text``."""
    parts = text.split(" ")
    return [part + " " for part in parts[:-1]] + [parts[-1]]


def split(text: str, count: int = 3) -> list[str]:
    """Cut ``text`` into ``count`` consecutive pieces (fewer when it is shorter).

    Streamed tool arguments arrive in several deltas, so clients must join them.
    """
    size = max(1, -(-len(text) // count))
    return [text[start : start + size] for start in range(0, len(text), size)] or [""]


def sse(data: Any, event: str | None = None) -> bytes:
    """Frame one server-sent event, named when ``event`` is given (Responses, Anthropic)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def error(message: str, kind: str, code: str | None = None) -> JSON:
    """Return an OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "code": code}}


def envelope(prefix: str, obj: str, body: JSON) -> JSON:
    """Return the id/object/created/model fields shared by chat and completion answers."""
    head = {"id": prefix + uuid.uuid4().hex, "object": obj, "created": int(time.time())}
    return head | {"model": body.get("model") or "sim-model", "system_fingerprint": "fp_sim"}
