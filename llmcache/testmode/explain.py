"""Why did this request miss? The canonical key of a request, whether a store holds it,
and on a miss the nearest entries with the fields that differ.

Only recordings (``recording://`` files, written by the pytest plugin) keep the requests
beside their answers: other stores keep answers under digests, so for them the
explanation stops at the key, whether it is held, and how many entries the namespace has
(memcached cannot even list its keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcache._rules.keys import canonical_params, physical_key
from llmcache.backends.urls import redact
from llmcache.errors import ConfigError
from llmcache.testmode.diff import Nearest, nearest
from llmcache.testmode.lines import key_of, request_record
from llmcache.testmode.store import RecordingStore

__all__ = ["DEFAULT_UPSTREAMS", "Explanation", "explain", "key_of", "normalise", "render_miss"]

DEFAULT_UPSTREAMS = {"messages": "https://api.anthropic.com"}
OPENAI_UPSTREAM = "https://api.openai.com/v1"
ENDPOINTS = ("chat.completions", "completions", "embeddings", "responses", "messages")


def normalise(
    request: Mapping[str, Any], *, endpoint: str | None = None, upstream: str | None = None
) -> dict[str, Any]:
    """Return a request as recordings hold it.

    :param request: either a recorded request (``endpoint``, ``upstream``, ``params``, as
        in a recording file) or the arguments of the SDK call (``model``, ``messages``...).
    :param endpoint: the endpoint of bare arguments (default ``chat.completions``).
    :param upstream: the base URL of bare arguments (default the provider's public API).
    :raises ConfigError: the endpoint is not a known one.
    """
    if isinstance(request.get("params"), Mapping) and isinstance(request.get("endpoint"), str):
        record = dict(request)
        record["params"] = canonical_params(record["params"])
        return record
    endpoint = endpoint or "chat.completions"
    if endpoint not in ENDPOINTS:
        raise ConfigError(f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")
    base = (upstream or DEFAULT_UPSTREAMS.get(endpoint, OPENAI_UPSTREAM)).rstrip("/")
    return request_record(endpoint, f"{base}||", canonical_params(request))


@dataclass
class Explanation:
    """What :func:`explain` found.

    :param key: the request's logical key.
    :param store: the store's URL, its password redacted.
    :param namespace: the namespace looked in.
    :param held: whether the store holds an answer under the key.
    :param nearest: on a miss, the nearest requests the store recorded.
    :param note: what the store cannot tell, when it cannot.
    :param recorded: how many requests the store recorded beside their answers (``None``
        for stores that keep answers only).
    """

    key: str
    store: str
    namespace: str
    held: bool
    nearest: list[Nearest] = field(default_factory=list)
    note: str | None = None
    recorded: int | None = None

    def text(self) -> str:
        """Return the explanation as lines of text."""
        where = "" if self.recorded is not None else f" (namespace {self.namespace})"
        lines = [f"key: {self.key}", f"store: {self.store}{where}"]
        lines.append("held: yes" if self.held else "held: no")
        if not self.held and self.recorded is not None:
            lines += _nearest_lines(self.nearest, self.recorded)
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def _nearest_lines(found: list[Nearest], recorded: int) -> list[str]:
    if recorded == 0:
        return ["the store holds no recorded request to compare with"]
    if not found:
        return []
    lines = []
    for rank, near in enumerate(found, start=1):
        by = f", recorded by {near.test}" if near.test else ""
        what = near.request.get("endpoint"), near.request.get("params", {}).get("model")
        lines.append(f"nearest #{rank}: {what[0]} {what[1]} (key {near.key}{by})")
        lines.append("  differing fields (this request != recorded):")
        lines += [f"    {d.text()}" for d in near.differences] or ["    (none)"]
    return lines


def render_miss(
    path: str, test: str, record: dict[str, Any], key: str, found: list[Nearest], total: int
) -> str:
    """Return the failure message of a strict-mode request without a recording."""
    model = record.get("params", {}).get("model")
    lines = [
        f"llmcache strict mode: no recording of this request in {path}",
        f"  request: {record.get('endpoint')} {model} at {record.get('upstream')} (key {key})",
    ]
    if not found:
        lines.append(f"  the recording holds {total} request(s), none to compare with")
    for line in _nearest_lines(found[:1], total):
        lines.append("  " + line)
    lines.append(f"Record it: pytest --llmcache=record {test}  (or --llmcache=replay)")
    return "\n".join(lines)


def explain(
    url: str,
    request: Mapping[str, Any],
    *,
    endpoint: str | None = None,
    upstream: str | None = None,
    namespace: str = "default",
    limit: int = 3,
    timeout: float = 5.0,
) -> Explanation:
    """Explain how a store answers a request: its key, whether it is held, and on a miss the
    nearest recorded requests with the fields that differ.

    :param url: a tier URL (``recording:///tests/cassettes/test_bot.jsonl``,
        ``sqlite:///cache.db``, ``redis://…``).
    :param request: a recorded request or the SDK call's arguments (see :func:`normalise`).
    :param endpoint: the endpoint of bare arguments (default ``chat.completions``).
    :param upstream: the base URL of bare arguments (default the provider's public API).
    :param namespace: the namespace looked in (recordings have one of their own).
    :param limit: how many nearest requests to show.
    :param timeout: seconds each store operation may take.
    :raises ConfigError: the URL or the endpoint is not known.
    """
    from llmcache.tools.inventory import open_store

    record = normalise(request, endpoint=endpoint, upstream=upstream)
    key = key_of(record)
    tier = open_store(url, timeout=timeout)
    backend = tier.backend
    try:
        if isinstance(backend, RecordingStore):
            return _explain_recording(backend, record, key, redact(url), limit)
        held = backend.get(physical_key(namespace, key)) is not None
        result = Explanation(key, redact(url), namespace, held)
        if held:
            return result
        result.note = (
            "this store keeps answers under digests, not the requests that made them, "
            "so it cannot say which fields differ (recordings can: see the pytest plugin)"
        )
        if tier.caps.listing:
            prefix = physical_key(namespace, "")
            entries = sum(1 for _ in backend.scan(prefix + "*"))
            result.note = f"the namespace holds {entries} entries; " + result.note
        else:
            result.note = f"a {tier.url.kind} store cannot list its keys; " + result.note
        return result
    finally:
        if not isinstance(backend, RecordingStore):  # recordings stay open for the process
            backend.close()


def _explain_recording(
    store: RecordingStore, record: dict[str, Any], key: str, url: str, limit: int
) -> Explanation:
    store.reload()  # the file may have changed since this process opened it
    lines = store.lines()
    held = any(line.key == key for line in lines)
    recorded = [(line.key, line.test, line.request) for line in lines if line.request]
    result = Explanation(key, url, "", held, recorded=len(recorded))
    if not held:
        result.nearest = nearest(record, recorded, limit)
    unrecorded = len(lines) - len(recorded)
    if unrecorded:
        result.note = (
            f"{unrecorded} answer(s) were recorded without their request and are not compared"
        )
    return result
