"""What part of a request a semantic match may differ in, and what must match exactly.

A request is split into its *partition* (endpoint, upstream, model, every parameter but
the messages, the system prompt and every message but the last user turn), which a
candidate must share exactly, and the *question*: the text of the last user turn, which
may differ in wording. Requests whose answer is not a function of that wording are left
out: sampled ones (``temperature > 0`` given, unless allowed), several choices (``n > 1``),
attachments (images, audio, files) and tool results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmcache._rules.keys import UncacheableRequest, request_digest
from llmcache._rules.request import CacheRequest

__all__ = ["Query", "query_of"]

# the list of turns of each endpoint the matcher understands, and the one text input
_TURNS = {"chat.completions": "messages", "messages": "messages", "responses": "input"}
_TEXT = {"completions": "prompt", "responses": "input"}
_TOOL_ROLES = frozenset({"tool", "function"})
_TOOL_PARTS = frozenset({"tool_result", "tool_use", "function_call", "function_call_output"})


@dataclass(frozen=True, slots=True)
class Query:
    """The semantic view of one request.

    :param partition: a digest of everything that must match exactly.
    :param text: the last user turn, the part that may be worded differently.
    """

    partition: str
    text: str


def _text_of(content: Any) -> str | None:
    """Return the text of a message's content, or ``None`` when it carries anything else."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts = []
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") not in ("text", "input_text"):
            return None  # an image, audio, a file, a tool result
        text = part.get("text")
        if not isinstance(text, str):
            return None
        texts.append(text)
    return "\n".join(texts)


def _has_tools(turns: list[Any]) -> bool:
    for turn in turns:
        if not isinstance(turn, Mapping):
            return True
        if turn.get("role") in _TOOL_ROLES or turn.get("type") in _TOOL_PARTS:
            return True
        content = turn.get("content")
        if isinstance(content, list) and any(
            isinstance(p, Mapping) and p.get("type") in _TOOL_PARTS for p in content
        ):
            return True
    return False


def _split(request: CacheRequest) -> tuple[dict[str, Any], str] | None:
    """Return the request's arguments without the question, and the question."""
    params = dict(request.params)
    name = _TURNS.get(request.endpoint)
    turns = params.get(name) if name is not None else None
    if isinstance(turns, list) and turns:
        last = turns[-1]
        if not isinstance(last, Mapping) or last.get("role") != "user" or _has_tools(turns):
            return None
        text = _text_of(last.get("content"))
        if text is None:
            return None
        params[name] = list(turns[:-1])  # type: ignore[index]
        return params, text
    name = _TEXT.get(request.endpoint)
    if name is not None and isinstance(params.get(name), str):
        text = params[name]
        params[name] = None
        return params, text
    return None


def query_of(request: CacheRequest, *, allow_sampled: bool = False) -> Query | None:
    """Return the semantic view of ``request``, or ``None`` when it may not match semantically.

    :param allow_sampled: match requests that give ``temperature > 0`` too.
    """
    params = request.params
    temperature = params.get("temperature")
    if (
        not allow_sampled
        and isinstance(temperature, (int, float))
        and not isinstance(temperature, bool)
        and temperature > 0
    ):
        return None
    n = params.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        return None
    split = _split(request)
    if split is None:
        return None
    rest, text = split
    if not text.strip():
        return None
    shape = CacheRequest(
        request.endpoint, rest, namespace=request.namespace, provider=request.provider
    )
    try:
        digest = request_digest(shape)
    except UncacheableRequest:
        return None
    # the caller's scope (cache_key) is part of the partition: scopes never share answers
    scope = request.options.key
    partition = digest.replace("-", "") if scope is None else f"{_hash(scope)}{digest[3:]}"
    return Query(partition, text)


def _hash(text: str) -> str:
    import hashlib

    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
