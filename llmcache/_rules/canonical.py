"""The canonical request: what a call asked, in the form recordings and entries keep it.

A canonical request is plain data (a JSON object)::

    {"endpoint": "chat.completions", "upstream": "https://api.openai.com/v1",
     "organization": "org-1", "project": "p-1", "scope": "user_123",
     "params": {"messages": [...], "model": "gpt-4o-mini"}}

``params`` are the arguments that make the key (:func:`llmcache._rules.keys.canonical_params`);
``organization``, ``project`` and ``scope`` (the call's ``cache_key``) appear only when
set. Headers are never part of it, so neither are API keys; query parameters of the
upstream URL that carry credentials in some APIs (Gemini's ``?key=``) are redacted.

Recordings keep one beside every answer; other stores keep one in an entry only when the
cache was built with ``keep_requests=True``. ``llmcache explain`` compares a missed
request with them (:mod:`llmcache.testmode.diff`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from llmcache._rules.keys import _default, canonical_params
from llmcache._rules.request import CacheRequest
from llmcache._tiers.codec import Entry

__all__ = [
    "REDACTED",
    "SECRET_QUERY",
    "keep_request",
    "provider_of",
    "redact_query",
    "request_of",
    "request_record",
]

REDACTED = "[redacted]"
# query parameters that carry credentials in some APIs' URLs (Gemini's ?key=, signed URLs)
SECRET_QUERY = frozenset(
    {"key", "api_key", "api-key", "apikey", "token", "access_token", "sig", "signature"}
)


def request_record(
    endpoint: str, provider: str, params: Any, scope: str | None = None
) -> dict[str, Any]:
    """Return a canonical request: endpoint, upstream identity, arguments.

    :param provider: the upstream identity, ``"<base URL>|<organization>|<project>"``.
    :param params: the canonical arguments (those that make the key).
    :param scope: the call's ``cache_key``, when it gave one.
    """
    upstream, _, rest = provider.partition("|")
    organization, _, project = rest.partition("|")
    record: dict[str, Any] = {"endpoint": endpoint, "upstream": upstream}
    if organization:
        record["organization"] = organization
    if project:
        record["project"] = project
    if scope is not None:
        record["scope"] = scope
    record["params"] = params
    return record


def provider_of(record: Mapping[str, Any]) -> str:
    """Return the upstream identity of a canonical request (the inverse of
    :func:`request_record`)."""
    return "|".join(
        (record.get("upstream", ""), record.get("organization", ""), record.get("project", ""))
    )


def redact_query(url: str, names: frozenset[str] = SECRET_QUERY) -> str:
    """Return ``url`` with the values of the query parameters ``names`` (case-insensitive)
    replaced by ``[redacted]``."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, REDACTED if k.lower() in names else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="[]")))


def request_of(request: CacheRequest, redact: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Return the canonical request of a call, as plain data (SDK objects among the
    arguments turned into the JSON the key is made of).

    :param redact: argument names (and URL query parameters, on top of
        :data:`SECRET_QUERY`) whose values are replaced by ``[redacted]``.
    :raises TypeError: an argument cannot be turned into data (such a call has no key
        either, so it is never stored).
    """
    params = orjson.loads(orjson.dumps(canonical_params(request.params), default=_default))
    for name in redact & params.keys():
        params[name] = REDACTED
    base, sep, rest = request.provider.partition("|")
    provider = redact_query(base, SECRET_QUERY | redact) + sep + rest
    return request_record(request.endpoint, provider, params, request.options.key)


def keep_request(entry: Entry, request: CacheRequest) -> None:
    """Give ``entry`` the canonical request of the call that produced it (caches built with
    ``keep_requests=True``). A call whose arguments cannot be turned into data (a custom
    key strategy may cache one) keeps its entry without a request."""
    try:
        entry.request = request_of(request)
    except TypeError:
        entry.request = None
