"""Decide what the simulated model says next: a tool call, structured JSON, or plain text.

Agent loops must end, so the model calls a tool only when the request makes that the natural
next step: tools are offered, ``tool_choice`` is not ``"none"``, and either a tool is forced
(a named tool, or ``"required"`` / Anthropic's ``"any"``) or, on ``"auto"``, no tool result has
come back since the last user message. Once one has, the model answers in text, or in JSON
valid against the requested schema (``response_format``, Responses' ``text.format``,
Anthropic's ``output_format`` / ``output_config.format``). Under ``"required"`` the model
calls the first tool it has not called yet in the conversation (the first tool when it has
called them all): a framework that forces a final-answer tool after its own tools gets there.
Arguments are the smallest instance of the tool's parameter schema. Everything is a pure
function of the request, so the same request always gets the same answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmcache.tools.simulator.common import JSON, dicts
from llmcache.tools.simulator.schema import instance_of

__all__ = ["Turn", "chat_turn", "messages_turn", "responses_turn"]

_ANY_OBJECT: JSON = {"type": "object", "properties": {}}
_JSON_OBJECT = "json_object"  # the "any JSON object" format, as opposed to a schema


@dataclass(frozen=True)
class Turn:
    """The model's next move: call ``tool`` with ``arguments``, or answer (JSON if ``output``).

    :param tool: the tool to call, or None to answer.
    :param arguments: the call's arguments as JSON text ("" when answering).
    :param output: the structured answer's JSON schema, ``"json_object"``, or None for text.
    """

    tool: str | None = None
    arguments: str = ""
    output: JSON | str | None = None

    def structured(self, fallback: str) -> str | None:
        """Return the structured answer as JSON text (None for a text answer).

        ``fallback`` (the text answer) is wrapped as ``{"answer": ...}`` for ``json_object``.
        """
        if self.output is None:
            return None
        value = {"answer": fallback} if self.output == _JSON_OBJECT else instance_of(self.output)
        return json.dumps(value, ensure_ascii=False)  # spaced separators: streamed word by word


@dataclass(frozen=True)
class _Conversation:
    called: list[str]  # tool names the assistant has called, in order
    after_result: bool  # a tool result came back after the last user message


def _decide(
    tools: dict[str, JSON], choice: Any, conversation: _Conversation, output: JSON | str | None
) -> Turn:
    """Apply the module's rule to tools (name -> parameter schema) and ``tool_choice``."""
    mode, named = _mode(choice)
    tool: str | None = None
    if mode == "named" and named is not None:
        tool = named
    elif tools and mode == "required":
        fresh = [name for name in tools if name not in conversation.called]
        tool = (fresh or list(tools))[0]
    elif tools and mode == "auto" and not conversation.after_result:
        tool = next(iter(tools))
    if tool is None:
        return Turn(output=output)
    arguments = json.dumps(instance_of(tools.get(tool) or _ANY_OBJECT), ensure_ascii=False)
    return Turn(tool=tool, arguments=arguments)


def _mode(choice: Any) -> tuple[str, str | None]:
    """Normalise ``tool_choice`` of any API to ``(none|auto|required|named, tool name)``."""
    if isinstance(choice, str):
        return {"any": "required"}.get(choice, choice), None
    if not isinstance(choice, dict):
        return "auto", None
    name = choice.get("name") or (choice.get("function") or {}).get("name")
    if isinstance(name, str):
        return "named", name
    kind = choice.get("type")
    if kind == "allowed_tools":  # OpenAI's allowed tools carry a mode of their own
        mode = choice.get("mode") or (choice.get("allowed_tools") or {}).get("mode")
        return str(mode or "auto"), None
    return ("required" if kind == "any" else str(kind or "auto")), None


def _output(fmt: Any, schema_of: Callable[[JSON], Any]) -> JSON | str | None:
    """Return the schema a structured-output format asks for, ``"json_object"``, or None."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == _JSON_OBJECT:
        return _JSON_OBJECT
    schema = schema_of(fmt) if fmt.get("type") == "json_schema" else None
    return schema if isinstance(schema, dict) else None


def _scan(
    items: list[JSON], is_result: Callable[[JSON], bool], calls: Callable[[JSON], list[str]]
) -> _Conversation:
    """Walk a conversation: which tools were called, and whether a result follows the user."""
    called: list[str] = []
    last_user = last_result = -1
    for number, item in enumerate(items):
        if is_result(item):
            last_result = number
        elif item.get("role") == "user":
            last_user = number
        called += calls(item)
    return _Conversation(called, last_result > last_user)


def chat_turn(body: JSON) -> Turn:
    """Decide the next move for a chat.completions request."""
    tools = {
        f["name"]: f.get("parameters") or _ANY_OBJECT
        for t in dicts(body.get("tools"))
        if isinstance(f := t.get("function"), dict) and isinstance(f.get("name"), str)
    }

    def calls(message: JSON) -> list[str]:
        functions = [c.get("function") or {} for c in dicts(message.get("tool_calls"))]
        legacy = message.get("function_call")
        functions += [legacy] if isinstance(legacy, dict) else []
        return [str(f.get("name")) for f in functions]

    conversation = _scan(
        dicts(body.get("messages")), lambda m: m.get("role") in ("tool", "function"), calls
    )
    output = _output(
        body.get("response_format"), lambda f: (f.get("json_schema") or {}).get("schema")
    )
    return _decide(tools, body.get("tool_choice"), conversation, output)


def responses_turn(body: JSON) -> Turn:
    """Decide the next move for a responses request (function tools only)."""
    tools = {
        t["name"]: t.get("parameters") or _ANY_OBJECT
        for t in dicts(body.get("tools"))
        if t.get("type") == "function" and isinstance(t.get("name"), str)
    }
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else dicts(raw)
    conversation = _scan(
        items,
        lambda item: str(item.get("type", "")).endswith("_output"),
        lambda item: [str(item.get("name"))] if item.get("type") == "function_call" else [],
    )
    output = _output((body.get("text") or {}).get("format"), lambda f: f.get("schema"))
    return _decide(tools, body.get("tool_choice"), conversation, output)


def messages_turn(body: JSON) -> Turn:
    """Decide the next move for an Anthropic messages request (client tools only)."""
    tools = {
        t["name"]: t.get("input_schema") or _ANY_OBJECT
        for t in dicts(body.get("tools"))
        if isinstance(t.get("name"), str) and "input_schema" in t
    }

    def blocks(message: JSON, kind: str) -> list[JSON]:
        return [b for b in dicts(message.get("content")) if b.get("type") == kind]

    conversation = _scan(
        dicts(body.get("messages")),
        lambda m: m.get("role") == "user" and bool(blocks(m, "tool_result")),
        lambda m: [str(b.get("name")) for b in blocks(m, "tool_use")],
    )
    fmt = body.get("output_format") or (body.get("output_config") or {}).get("format")
    return _decide(
        tools, body.get("tool_choice"), conversation, _output(fmt, lambda f: f.get("schema"))
    )
