"""The Gemini API's ``generateContent`` and ``streamGenerateContent`` (google-genai's wire
format): the model is in the path, the answer a ``GenerateContentResponse``."""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

from llmcache.tools.simulator.common import (
    JSON,
    Endpoint,
    Result,
    Seen,
    answer,
    dicts,
    pieces,
    request_digest,
    sse,
)
from llmcache.tools.simulator.common import words as count_words

__all__ = ["route"]

_PATH = re.compile(r"/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):(?P<method>\w+)\Z")


def _text(contents: Any) -> tuple[str, int]:
    """Return the last user turn's text and the words of every turn."""
    if isinstance(contents, str):
        turns = [{"role": "user", "parts": [{"text": contents}]}]
    else:
        turns = dicts(contents)
    texts = [
        " ".join(p["text"] for p in dicts(turn.get("parts")) if isinstance(p.get("text"), str))
        for turn in turns
    ]
    users = [t for turn, t in zip(turns, texts, strict=True) if turn.get("role", "user") == "user"]
    return (users[-1] if users else ""), sum(count_words(t) for t in texts)


def _generate(model: str, stream: bool, seen: Seen, body: JSON) -> Result:
    prompt, prompt_tokens = _text(body.get("contents"))
    text = answer(request_digest({"model": model, **body}), prompt)
    completion = count_words(text)
    usage = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt_tokens + completion,
    }
    head = {"modelVersion": model, "responseId": uuid.uuid4().hex[:20]}

    def candidate(part: str, finish: str | None) -> JSON:
        found: JSON = {"content": {"role": "model", "parts": [{"text": part}]}, "index": 0}
        return found | ({"finishReason": finish} if finish else {})

    if not stream:
        return {"candidates": [candidate(text, "STOP")], "usageMetadata": usage, **head}
    parts = pieces(text)
    events = [sse({"candidates": [candidate(part, None)], **head}) for part in parts[:-1]]
    last = {"candidates": [candidate(parts[-1], "STOP")], "usageMetadata": usage, **head}
    return [*events, sse(last)]


def route(path: str) -> Endpoint | None:
    """Return the simulated endpoint of a Gemini API path, or ``None``."""
    match = _PATH.fullmatch(path)
    if match is None or match["method"] not in ("generateContent", "streamGenerateContent"):
        return None
    stream = match["method"] == "streamGenerateContent"
    return functools.partial(_generate, match["model"], stream)
