"""How the core talks about one API method's responses, whatever the SDK.

An :class:`EndpointAdapter` turns SDK objects into plain payloads (for entries) and back,
reads token counts, and converts between a whole response and a stream of chunks, so that
streamed and plain calls of the same request share one entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = [
    "EndpointAdapter",
    "Method",
    "Provider",
    "Usage",
    "compact_json",
    "dump",
    "usage_number",
]


def dump(obj: Any) -> dict[str, Any]:
    """Return an SDK object as plain JSON-compatible data (only the fields it was given)."""
    if type(obj) is dict or isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if to_dict is not None:
        return to_dict()  # type: ignore[no-any-return]
    return obj.model_dump(mode="json", by_alias=True, exclude_unset=True)  # type: ignore[no-any-return]


def usage_number(payload: Any, *path: str) -> int:
    """Return the integer at ``payload[path[0]][path[1]]...``, or 0.

    ``payload`` is plain data or an SDK object (whose fields are read as attributes).
    """
    value: Any = payload
    for part in path:
        if type(value) is dict or isinstance(value, Mapping):  # dict: skip the ABC check
            value = value.get(part)
        elif isinstance(value, BaseModel):
            value = getattr(value, part, None)
        else:
            return 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def compact_json(body: bytes) -> bytes:
    """Return a JSON document without the whitespace a server may have indented it with."""
    if b"\n" not in body:  # a newline outside strings is formatting (JSON strings escape it)
        return body
    try:  # the standard library's json: exact for integers of any size, unlike orjson
        return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    except ValueError:  # not JSON after all: keep it as it came
        return body


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response."""

    prompt: int = 0
    completion: int = 0
    provider_cached: int = 0  # of ``prompt``, read from the provider's prompt cache
    provider_written: int = 0  # of ``prompt``, written to it


class EndpointAdapter:
    """The response handling of one endpoint; subclasses set the types and conversions.

    :cvar endpoint: the endpoint name, such as ``"chat.completions"``.
    :cvar response_type: the SDK type of a whole response.
    :cvar chunk_type: the SDK type (or union) of one stream chunk or event.
    :cvar items: the field every answer of the endpoint carries as a list (``choices``).
    :cvar kind_field: the field naming the answer's type (``object``), when present.
    :cvar kinds: the values that field may hold for this endpoint.
    :cvar sse_named: server-sent events of a stream name their type (``event: <type>``).
    :cvar sse_done: what ends a stream on the wire after its last event (``data: [DONE]``).
    :cvar stream_end: the type of the event that completes a stream, where it has one.
    :ivar build: return the SDK object for a stored response payload (plain data),
        validated; raises :class:`pydantic.ValidationError` for one that is not such a
        response.
    :ivar build_json: the same for a response's JSON text.
    """

    endpoint: ClassVar[str]
    response_type: ClassVar[Any]
    chunk_type: ClassVar[Any]
    items: ClassVar[str] = "choices"
    kind_field: ClassVar[str] = "object"
    kinds: ClassVar[tuple[str, ...]] = ()
    sse_named: ClassVar[bool] = False
    sse_done: ClassVar[bytes] = b"data: [DONE]\n\n"
    stream_end: ClassVar[str | None] = None

    def __init__(self) -> None:
        self._chunk_adapter: TypeAdapter[Any] | None = None
        # What ``model_validate`` and ``model_validate_json`` call, without their keyword
        # handling: a hit's validation is one call into pydantic-core.
        validator = self.response_type.__pydantic_validator__
        self.build: Callable[[Mapping[str, Any]], Any] = validator.validate_python
        self.build_json: Callable[[bytes], Any] = validator.validate_json

    def shaped(self, data: Any) -> bool:
        """Tell whether plain data has the shape of this endpoint's answers.

        This is what an answer must pass to be stored and served when it does not satisfy
        the SDK's types (an OpenAI-compatible server that leaves out a required field, or an
        SDK upgrade that requires a new one): it tells answers of this endpoint from those
        of another endpoint and from error bodies, and nothing more.
        """
        if type(data) is not dict and not isinstance(data, Mapping):
            return False
        kind = data.get(self.kind_field)
        return isinstance(data.get(self.items), list) and (kind is None or kind in self.kinds)

    def lenient(self, data: Any) -> Any:
        """Return the SDK object for an answer that does not validate, built as the SDK
        builds every answer it receives: without validation, unknown fields kept.

        :raises ValueError: ``data`` is not shaped as an answer of this endpoint.
        """
        if not self.shaped(data):
            raise ValueError(f"not a {self.endpoint} answer")
        return self.response_type.construct(**data)

    def load(self, data: Mapping[str, Any]) -> Any:
        """Return the SDK object for stored plain data: validated when it validates (the
        fast path), else built leniently (:meth:`lenient`)."""
        try:
            return self.build(data)
        except ValidationError:
            return self.lenient(data)

    def load_json(self, body: bytes) -> Any:
        """:meth:`load` for an answer's JSON text."""
        try:
            return self.build_json(body)
        except ValidationError:
            return self.lenient(orjson.loads(body))

    def from_raw(self, reply: Any) -> tuple[Any, bytes | None]:
        """Return the SDK object of a raw reply (``with_raw_response``) and its JSON text.

        The response is validated from the JSON text the server sent, which is what a later
        hit validates too: no dump of a constructed object is needed to store it. A reply
        that does not validate is parsed as the SDK parses it; its text comes back too when
        it is shaped as an answer of this endpoint, else ``None`` (nothing is stored).
        """
        http = getattr(reply, "http_response", None)
        if http is None:  # not a raw reply: the SDK object itself
            return reply, None
        body = http.content
        try:
            response = self.build_json(body)
        except ValidationError:
            try:
                shaped = self.shaped(orjson.loads(body))
            except orjson.JSONDecodeError:
                shaped = False
            return reply.parse(), compact_json(body) if shaped else None
        response._request_id = reply.request_id  # as the SDK's own parse sets it
        return response, compact_json(body)

    def sse(self, chunks: list[dict[str, Any]]) -> bytes:
        """Return a stream's chunk payloads as the server-sent events an API sends."""
        events = []
        for chunk in chunks:
            data = orjson.dumps(chunk)
            if self.sse_named:
                events.append(b"event: %s\ndata: %s\n\n" % (str(chunk.get("type")).encode(), data))
            else:
                events.append(b"data: %s\n\n" % data)
        events.append(self.sse_done)
        return b"".join(events)

    def dump(self, obj: Any) -> dict[str, Any]:
        """Return an SDK object (a response or a chunk) as the plain data an entry stores."""
        return dump(obj)

    def build_chunk(self, payload: Mapping[str, Any]) -> Any:
        """Return the SDK object for a stored chunk payload, built as the SDK builds a live one.

        Live chunks do not always satisfy their own type (a legacy completion chunk has no
        ``finish_reason`` until the last), so the SDK constructs them without validation;
        the core validates the whole answer before replaying its chunks.
        """
        construct = getattr(self.chunk_type, "construct", None)
        if construct is not None:
            return construct(**payload)
        if self._chunk_adapter is None:
            self._chunk_adapter = TypeAdapter(self.chunk_type)
        return self._chunk_adapter.validate_python(payload)

    def usage(self, payload: Any) -> Usage:
        """Return the token counts of a response payload (plain data or the SDK object)."""
        return Usage(
            usage_number(payload, "usage", "prompt_tokens"),
            usage_number(payload, "usage", "completion_tokens"),
            usage_number(payload, "usage", "prompt_tokens_details", "cached_tokens"),
        )

    def model(self, payload: Any) -> str | None:
        """Return the model that answered (from plain data or the SDK object)."""
        if isinstance(payload, BaseModel):
            model = getattr(payload, "model", None)
        else:
            model = payload.get("model")
        return model if isinstance(model, str) else None

    def assemble(self, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the whole-response payload a stream of chunk payloads amounts to."""
        raise NotImplementedError

    def synthesize(
        self, payload: Mapping[str, Any], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Return chunk payloads that replay a whole response as a stream."""
        raise NotImplementedError

    def replay(
        self, chunks: list[dict[str, Any]], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Adapt stored chunks to this request's stream options (usage chunk or not)."""
        return chunks


@dataclass(frozen=True, slots=True)
class Method:
    """One SDK method the wrapper caches.

    :param path: the attributes from the client to the resource (``("chat", "completions")``).
    :param name: the method's name on the resource (``"create"``).
    :param endpoint: the endpoint it calls (an adapter of the provider handles its answers).
    :param stream: the method always streams (google-genai's ``generate_content_stream``);
        the endpoint's other method is its unstreamed twin, and both share entries.
    """

    path: tuple[str, ...]
    name: str
    endpoint: str
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Provider:
    """One SDK family, as a provider plugin registers it.

    :param name: the family's name (``"openai"``).
    :param adapters: the response handling of each endpoint, by endpoint name.
    :param methods: the SDK methods the wrapper caches.
    :param modules: module prefixes of the SDK's client classes (``("openai",)``): a client
        whose class comes from one of them is this family's.
    :param routes: ``(path suffix, endpoint)`` of the HTTP requests the HTTP-level cache
        answers for this family (``("/chat/completions", "chat.completions")``).
    :param fallback: wrap clients no provider recognises when they have this family's
        methods (OpenAI-compatible clients of other SDKs).
    :param sdk_cache_control: the SDK has a ``cache_control`` parameter of its own.
    :param identify: the upstream identity of a client (what keeps two upstreams' entries
        apart; never an API key), when the SDK does not expose ``base_url`` /
        ``organization`` / ``project``.
    """

    name: str
    adapters: Mapping[str, EndpointAdapter]
    sdk_cache_control: bool = False
    methods: tuple[Method, ...] = ()
    modules: tuple[str, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()
    fallback: bool = False
    identify: Callable[[Any], str] | None = None

    def recognises(self, client: Any) -> bool:
        """Tell whether ``client`` is an SDK client of this family."""
        module = type(client).__module__
        return any(module == m or module.startswith(m + ".") for m in self.modules)

    def resource(self, client: Any, method: Method) -> Any:
        """Return the resource of ``client`` that holds ``method``, or ``None``."""
        target = client
        for part in method.path:
            target = getattr(target, part, None)
            if target is None:
                return None
        return target if callable(getattr(target, method.name, None)) else None
