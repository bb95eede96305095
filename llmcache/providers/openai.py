"""Response handling for the OpenAI SDK's cached endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from llmcache.providers.base import EndpointAdapter, Method, Provider, Usage, usage_number

__all__ = ["OPENAI"]

_HEAD = ("id", "created", "model", "system_fingerprint", "service_tier")


def _include_usage(params: Mapping[str, Any]) -> bool:
    options = params.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


def _usage_chunks(
    chunks: list[dict[str, Any]], params: Mapping[str, Any], usage: Any
) -> list[dict[str, Any]]:
    """Drop or add the trailing usage-only chunk as this request's stream options ask."""
    body = [c for c in chunks if c.get("choices")]
    if not _include_usage(params):
        return body
    tail = [c for c in chunks if not c.get("choices") and c.get("usage")]
    if not tail and usage and chunks:
        tail = [
            {**{k: chunks[0][k] for k in _HEAD if k in chunks[0]}, "choices": [], "usage": usage}
        ]
        tail[0]["object"] = chunks[0].get("object")
    return body + tail


class _ChoiceStream(EndpointAdapter):
    """An endpoint whose stream is chunks of ``choices``, merged per choice index."""

    whole_object: str
    chunk_object: str

    def new_choice(self, index: int) -> dict[str, Any]:
        """Return an empty choice of the whole response."""
        raise NotImplementedError

    def merge(self, choice: dict[str, Any], part: Mapping[str, Any]) -> None:
        """Fold one chunk's choice into the whole response's choice."""
        raise NotImplementedError

    def assemble(self, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        first = chunks[0] if chunks else {}
        result: dict[str, Any] = {k: first[k] for k in _HEAD if first.get(k) is not None}
        result["object"] = self.whole_object
        choices: dict[int, dict[str, Any]] = {}
        for chunk in chunks:
            if chunk.get("usage"):
                result["usage"] = chunk["usage"]
            for part in chunk.get("choices") or ():
                index = part.get("index", 0)
                choice = choices.get(index)
                if choice is None:
                    choice = choices[index] = self.new_choice(index)
                self.merge(choice, part)
                if part.get("finish_reason"):
                    choice["finish_reason"] = part["finish_reason"]
        result["choices"] = [choices[i] for i in sorted(choices)]
        return result

    def head(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Return the fields every synthesized chunk repeats."""
        head = {k: payload[k] for k in _HEAD if k in payload}
        head["object"] = self.chunk_object
        return head

    def replay(
        self, chunks: list[dict[str, Any]], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        usage = next((c["usage"] for c in chunks if c.get("usage")), None)
        return _usage_chunks(chunks, params, usage)


class ChatCompletions(_ChoiceStream):
    """``chat.completions.create``."""

    endpoint = "chat.completions"
    response_type = ChatCompletion
    chunk_type = ChatCompletionChunk
    whole_object = "chat.completion"
    chunk_object = "chat.completion.chunk"
    kinds = ("chat.completion",)

    def new_choice(self, index: int) -> dict[str, Any]:
        return {"index": index, "message": {"role": "assistant"}, "finish_reason": "stop"}

    def merge(self, choice: dict[str, Any], part: Mapping[str, Any]) -> None:
        message = choice["message"]
        _merge_delta(message, part.get("delta") or {})
        if part.get("logprobs"):
            logprobs = choice.setdefault("logprobs", {})
            for field in ("content", "refusal"):
                if part["logprobs"].get(field):
                    logprobs.setdefault(field, []).extend(part["logprobs"][field])

    def assemble(self, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        result = super().assemble(chunks)
        for choice in result["choices"]:
            choice["message"].setdefault("content", None)
            calls = choice["message"].get("tool_calls")
            if calls:
                choice["message"]["tool_calls"] = [calls[i] for i in sorted(calls)]
        return result

    def synthesize(
        self, payload: Mapping[str, Any], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        head = self.head(payload)
        chunks = []
        for choice in payload.get("choices") or ():
            message = choice.get("message") or {}
            delta: dict[str, Any] = {"role": message.get("role", "assistant")}
            for field in ("content", "refusal", "function_call"):
                if message.get(field) is not None:
                    delta[field] = message[field]
            if message.get("tool_calls"):
                delta["tool_calls"] = [
                    {"index": i, **call} for i, call in enumerate(message["tool_calls"])
                ]
            index = choice.get("index", 0)
            first = {"index": index, "delta": delta, "finish_reason": None}
            if choice.get("logprobs"):
                first["logprobs"] = choice["logprobs"]
            last = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
            chunks += [{**head, "choices": [first]}, {**head, "choices": [last]}]
        return _usage_chunks(chunks, params, payload.get("usage"))


def _merge_delta(message: dict[str, Any], delta: Mapping[str, Any]) -> None:
    for field in ("role",):
        if delta.get(field):
            message[field] = delta[field]
    for field in ("content", "refusal"):
        if delta.get(field) is not None:
            message[field] = (message.get(field) or "") + delta[field]
    if delta.get("function_call"):
        call = message.setdefault("function_call", {"name": "", "arguments": ""})
        call["name"] += delta["function_call"].get("name") or ""
        call["arguments"] += delta["function_call"].get("arguments") or ""
    for part in delta.get("tool_calls") or ():
        calls = message.setdefault("tool_calls", {})
        call = calls.setdefault(
            part.get("index", 0),
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if part.get("id"):
            call["id"] = part["id"]
        if part.get("type"):
            call["type"] = part["type"]
        function = part.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""


class Completions(_ChoiceStream):
    """``completions.create`` (the legacy text API)."""

    endpoint = "completions"
    response_type = Completion
    chunk_type = Completion
    whole_object = chunk_object = "text_completion"
    kinds = ("text_completion",)

    def new_choice(self, index: int) -> dict[str, Any]:
        return {"index": index, "text": "", "finish_reason": "stop"}

    def merge(self, choice: dict[str, Any], part: Mapping[str, Any]) -> None:
        choice["text"] += part.get("text") or ""
        if part.get("logprobs"):
            choice["logprobs"] = part["logprobs"]

    def synthesize(
        self, payload: Mapping[str, Any], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        head = self.head(payload)
        chunks = [{**head, "choices": [choice]} for choice in payload.get("choices") or ()]
        return _usage_chunks(chunks, params, payload.get("usage"))


class Responses(EndpointAdapter):
    """``responses.create``: its stream is a sequence of typed events."""

    endpoint = "responses"
    response_type = Response
    chunk_type = ResponseStreamEvent
    items = "output"
    kinds = ("response",)
    sse_named = True
    sse_done = b""
    stream_end = "response.completed"

    def usage(self, payload: Any) -> Usage:
        return Usage(
            usage_number(payload, "usage", "input_tokens"),
            usage_number(payload, "usage", "output_tokens"),
            usage_number(payload, "usage", "input_tokens_details", "cached_tokens"),
        )

    def assemble(self, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        for event in reversed(chunks):
            if isinstance(event.get("response"), Mapping):
                return dict(event["response"])
        raise ValueError("the stream carried no response object")

    def synthesize(
        self, payload: Mapping[str, Any], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        started = {**payload, "status": "in_progress", "output": []}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": started},
            {"type": "response.in_progress", "response": started},
        ]
        for index, item in enumerate(payload.get("output") or ()):
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": item}
            )
            for part_index, part in enumerate(item.get("content") or ()):
                where = {
                    "item_id": item.get("id", ""),
                    "output_index": index,
                    "content_index": part_index,
                }
                if part.get("type") == "output_text":
                    events.append(
                        {
                            "type": "response.output_text.delta",
                            **where,
                            "delta": part.get("text", ""),
                            "logprobs": [],
                        }
                    )
                    events.append(
                        {
                            "type": "response.output_text.done",
                            **where,
                            "text": part.get("text", ""),
                            "logprobs": [],
                        }
                    )
            events.append(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
        events.append({"type": "response.completed", "response": dict(payload)})
        return [{**event, "sequence_number": n} for n, event in enumerate(events)]


class Embeddings(EndpointAdapter):
    """``embeddings.create``: cached per input, see :mod:`llmcache._engine.embeddings`."""

    endpoint = "embeddings"
    response_type = CreateEmbeddingResponse
    chunk_type = CreateEmbeddingResponse
    items = "data"
    kinds = ("list",)

    def usage(self, payload: Any) -> Usage:
        return Usage(usage_number(payload, "usage", "prompt_tokens"), 0, 0)


OPENAI = Provider(
    "openai",
    {a.endpoint: a for a in (ChatCompletions(), Completions(), Responses(), Embeddings())},
    methods=(
        Method(("chat", "completions"), "create", "chat.completions"),
        Method(("completions",), "create", "completions"),
        Method(("embeddings",), "create", "embeddings"),
        Method(("responses",), "create", "responses"),
    ),
    modules=("openai",),
    # longest first: /chat/completions before /completions
    routes=(
        ("/chat/completions", "chat.completions"),
        ("/completions", "completions"),
        ("/embeddings", "embeddings"),
        ("/responses", "responses"),
    ),
    fallback=True,
)
