"""Prompt-prefix caching: mark the stable start of a prompt for the provider's own cache.

With ``cache_prompt=True``, an OpenAI request gets a ``prompt_cache_key`` derived from its
stable prefix (system and developer messages, tools, instructions) unless it has one, so
that requests sharing the prefix are routed to the same prompt cache. An Anthropic request
gets a ``cache_control: {"type": "ephemeral"}`` breakpoint on its last system block, or
on its last tool when there is no system prompt. Neither change takes part in the
response cache's key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["ANTHROPIC_MAX_BREAKPOINTS", "mark_prefix", "prefix_key"]

ANTHROPIC_MAX_BREAKPOINTS = 4
_PREFIX_ROLES = ("system", "developer")
_EPHEMERAL = {"type": "ephemeral"}


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", exclude_unset=True) if dump is not None else value


def prefix_key(params: Mapping[str, Any]) -> str | None:
    """Return ``"llmcache-<digest>"`` of a request's stable prefix, or ``None`` if it has none."""
    messages = params.get("messages") or params.get("input")
    prefix: list[Any] = []
    if isinstance(messages, list):
        for message in messages:
            message = _plain(message)
            if not isinstance(message, Mapping) or message.get("role") not in _PREFIX_ROLES:
                break
            prefix.append(message)
    parts = {
        "model": params.get("model"),
        "prefix": prefix,
        "instructions": params.get("instructions"),
        "tools": [_plain(t) for t in params.get("tools") or ()],
    }
    if not prefix and not parts["instructions"] and not parts["tools"]:
        return None
    blob = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS, default=str)
    return "llmcache-" + hashlib.blake2b(blob, digest_size=12).hexdigest()


def _count_breakpoints(params: Mapping[str, Any]) -> int:
    count = 0
    for field in ("system", "tools", "messages"):
        value = params.get(field)
        if not isinstance(value, list):
            continue
        for block in value:
            block = _plain(block)
            if isinstance(block, Mapping):
                count += "cache_control" in block
                content = block.get("content")
                if isinstance(content, list):
                    count += sum(isinstance(c, Mapping) and "cache_control" in c for c in content)
    return count


def _with_breakpoint(blocks: list[Any]) -> list[Any]:
    *head, last = [_plain(b) for b in blocks]
    if isinstance(last, Mapping) and "cache_control" not in last:
        last = {**last, "cache_control": dict(_EPHEMERAL)}
    return [*head, last]


def mark_prefix(provider: str, params: dict[str, Any]) -> dict[str, Any]:
    """Return the upstream arguments with the stable prefix marked for ``provider``."""
    if provider == "anthropic":
        if _count_breakpoints(params) >= ANTHROPIC_MAX_BREAKPOINTS:
            return params
        system = params.get("system")
        if isinstance(system, str) and system:
            return {
                **params,
                "system": [{"type": "text", "text": system, "cache_control": dict(_EPHEMERAL)}],
            }
        if isinstance(system, list) and system:
            return {**params, "system": _with_breakpoint(system)}
        tools = params.get("tools")
        if isinstance(tools, list) and tools:
            return {**params, "tools": _with_breakpoint(tools)}
        return params
    if params.get("prompt_cache_key") is None:
        key = prefix_key(params)
        if key is not None:
            return {**params, "prompt_cache_key": key}
    return params
