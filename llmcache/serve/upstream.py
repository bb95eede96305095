"""Where a proxied request goes, and errors in the format of the API it was meant for.

``/v1/messages`` (and what lies under it) belongs to Anthropic's API and goes to
``<upstream-anthropic>/v1/...``; every other ``/v1/...`` path belongs to the OpenAI API and
goes to ``<upstream-openai>/...``, the way each SDK joins its base URL and a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

__all__ = ["CACHED_PATHS", "Target", "error_body", "target"]

Api = Literal["openai", "anthropic"]

# the paths the cache answers (POST, JSON); anything else under /v1 is passed through
CACHED_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
    }
)


@dataclass(frozen=True, slots=True)
class Target:
    """A proxied request's destination.

    :param api: whose API the path belongs to (the format of errors).
    :param url: the upstream URL, query string included.
    :param cached: the path is one the cache answers.
    """

    api: Api
    url: str
    cached: bool


def api_of(path: str) -> Api:
    """Return whose API a proxy path belongs to."""
    return "anthropic" if path == "/v1/messages" or path.startswith("/v1/messages/") else "openai"


def target(path: str, query: str, openai_base: str, anthropic_base: str) -> Target | None:
    """Return where a request for ``path`` goes, or ``None`` when it is not an API path.

    :param path: the request's path on the proxy.
    :param query: its query string (without ``?``), or ``""``.
    """
    if not path.startswith("/v1/"):
        return None
    api = api_of(path)
    url = anthropic_base + path if api == "anthropic" else openai_base + path[3:]
    if query:
        url += "?" + query
    return Target(api, url, path in CACHED_PATHS)


_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_body(api: Api, status: int, message: str, param: str | None = None) -> bytes:
    """Return an error response body in the format of ``api``, as its SDK reads it.

    OpenAI: ``{"error": {"message", "type", "param", "code"}}``; Anthropic:
    ``{"type": "error", "error": {"type", "message"}}``.
    """
    kind = _KINDS.get(status, "api_error")
    if api == "anthropic":
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": kind}})
