"""google-genai (``google.genai.Client``): ``models.generate_content`` and its stream.

Registered as a provider plugin like OpenAI and Anthropic, with nothing in the core that
knows of it. The SDK streams by method (``generate_content_stream``) rather than by an
argument, and a stream is a sequence of partial ``GenerateContentResponse`` objects whose
candidates' text parts add up to the whole answer. Wrap ``client`` for blocking calls and
``client.aio`` for asyncio ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from google.genai.types import GenerateContentResponse

from llmcache.providers.base import EndpointAdapter, Method, Provider, Usage

__all__ = ["GENAI", "GenerateContent"]

_DROPPED = ("sdk_http_response", "automatic_function_calling_history")


def _field(payload: Any, *names: str) -> Any:
    """Return the first of ``names`` (an attribute name and its JSON alias) ``payload`` has."""
    for name in names:
        if isinstance(payload, Mapping):
            if name in payload:
                return payload[name]
        elif getattr(payload, name, None) is not None:
            return getattr(payload, name)
    return None


class GenerateContent(EndpointAdapter):
    """``models.generate_content`` and ``models.generate_content_stream``."""

    endpoint = "generate_content"
    response_type = GenerateContentResponse
    chunk_type = GenerateContentResponse
    items = "candidates"
    kinds = ()
    sse_named = False
    sse_done = b""

    def dump(self, obj: Any) -> dict[str, Any]:
        """Return the answer's own fields (not the HTTP headers the SDK attaches)."""
        if isinstance(obj, Mapping):
            return dict(obj)
        return obj.model_dump(  # type: ignore[no-any-return]
            mode="json", by_alias=True, exclude_unset=True, exclude=set(_DROPPED)
        )

    def build_chunk(self, payload: Mapping[str, Any]) -> Any:
        """Validate a chunk: pydantic's ``construct`` (what OpenAI's SDK models override to
        build nested objects) leaves this SDK's nested fields as dicts."""
        return self.build(payload)

    def shaped(self, data: Any) -> bool:
        return isinstance(data, Mapping) and isinstance(data.get("candidates"), list)

    def usage(self, payload: Any) -> Usage:
        usage = _field(payload, "usageMetadata", "usage_metadata")
        if usage is None:
            return Usage()

        def count(*names: str) -> int:
            value = _field(usage, *names)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        prompt = count("promptTokenCount", "prompt_token_count")
        completion = count("candidatesTokenCount", "candidates_token_count") + count(
            "thoughtsTokenCount", "thoughts_token_count"
        )
        cached = count("cachedContentTokenCount", "cached_content_token_count")
        return Usage(prompt, completion, cached)

    def model(self, payload: Any) -> str | None:
        model = _field(payload, "modelVersion", "model_version")
        return model if isinstance(model, str) else None

    def assemble(self, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        if not chunks:
            raise ValueError("the stream carried no response")
        whole = copy.deepcopy(chunks[0])
        candidates: dict[int, dict[str, Any]] = {}
        for chunk in chunks:
            for key, value in chunk.items():
                if key != "candidates":
                    whole[key] = value  # the last chunk carries usage and the final fields
            for part in chunk.get("candidates") or ():
                index = part.get("index", 0)
                merged = candidates.get(index)
                if merged is None:
                    candidates[index] = copy.deepcopy(part)
                    continue
                _merge(merged, part)
        whole["candidates"] = [candidates[i] for i in sorted(candidates)]
        return whole

    def synthesize(
        self, payload: Mapping[str, Any], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        return [dict(payload)]  # one partial response that is the whole answer


def _merge(merged: dict[str, Any], part: Mapping[str, Any]) -> None:
    """Fold one streamed candidate into the candidate assembled so far."""
    parts = merged.setdefault("content", {}).setdefault("parts", [])
    for new in (part.get("content") or {}).get("parts") or ():
        last = parts[-1] if parts else None
        if last is not None and set(last) == {"text"} and set(new) == {"text"}:
            last["text"] += new["text"]
        else:
            parts.append(dict(new))
    for key, value in part.items():
        if key != "content":
            merged[key] = value


def _identity(client: Any) -> str:
    """Return the client's API endpoint: its base URL, or Vertex AI's project and location."""
    options = getattr(getattr(client, "_api_client", None), "_http_options", None)
    base = str(getattr(options, "base_url", None) or "").rstrip("/")
    api = getattr(client, "_api_client", None)
    vertex = [str(getattr(api, name, "") or "") for name in ("project", "location")]
    return "|".join([base, *vertex])


GENAI = Provider(
    "genai",
    {"generate_content": GenerateContent()},
    methods=(
        Method(("models",), "generate_content", "generate_content"),
        Method(("models",), "generate_content_stream", "generate_content", stream=True),
    ),
    modules=("google.genai",),
    identify=_identity,
)
