"""The recording file format: one JSON object per line, sorted, stable, secrets left out.

A line holds one recorded answer::

    {"v":1,"key":"v1-…","test":"tests/test_bot.py::test_greets",
     "request":{"endpoint":"chat.completions","upstream":"https://api.openai.com/v1",
                "params":{"messages":[…],"model":"gpt-4o-mini"}},
     "kind":"json","model":"gpt-4o-mini","usage":[12,9,0,0],"answer":{…}}

``key`` is the logical cache key (the namespace is the file's), ``test`` the pytest node id
that recorded it, ``request`` the canonical request (the arguments that make the key,
the endpoint and the upstream's identity: never a header, so never an API key), ``kind``
the entry kind (``json``: one answer, ``chunks``: a stream's events, ``response``,
``embedding``), ``usage`` the prompt, completion, provider-cached and provider-written
token counts. The fields come in this order and every object inside is written with
sorted keys, so a re-recording changes only the lines whose answers changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from llmcache._rules.canonical import REDACTED, provider_of, request_record
from llmcache._rules.keys import KEY_VERSION, RequestKeyStrategy
from llmcache._rules.request import CacheOptions, CacheRequest
from llmcache._tiers.codec import Entry
from llmcache.errors import LLMCacheError

__all__ = [
    "FORMAT_VERSION",
    "REDACTED",
    "Line",
    "OutdatedLine",
    "RecordingError",
    "dump_line",
    "key_of",
    "parse_line",
    "request_record",
]

FORMAT_VERSION = 1
_KINDS = {"json": dict, "chunks": list, "response": dict, "embedding": dict, "langchain": str}
_FIELDS = ("v", "key", "test", "request", "kind", "model", "usage", "answer")
_SORTED = orjson.OPT_SORT_KEYS


class RecordingError(LLMCacheError, ValueError):
    """A recording file that cannot be read: the message names the file and the line."""

    __module__ = "llmcache"

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = Path(path)
        self.line = line


class OutdatedLine(RecordingError):
    """A line written in an older format: re-recording replaces it."""

    __module__ = "llmcache"


@dataclass(slots=True)
class Line:
    """One recorded answer, with the request that made it.

    :param key: the logical key.
    :param test: the node id of the test that recorded it.
    :param request: the canonical request (see :func:`request_record`), or ``None`` when
        it was not known (a line written by hand).
    :param entry: the answer as the cache stores it (its ``key`` is filled in on use).
    """

    key: str
    test: str
    request: dict[str, Any] | None
    entry: Entry
    blob: bytes | None = field(default=None, repr=False)  # the encoded entry, made once


def key_of(record: dict[str, Any], strategy: Any = None) -> str:
    """Return the logical key of a recorded request.

    :param strategy: the key strategy (an object with ``key(request)``); default the
        ``"request"`` strategy, which recordings use.
    """
    options = CacheOptions(key=record.get("scope"))
    request = CacheRequest(
        record["endpoint"], record["params"], options, provider=provider_of(record)
    )
    key: str = (strategy or RequestKeyStrategy()).key(request)
    return key


def _rekeyed(line: Line, path: Path, number: int) -> Line:
    """Return the line under the key its request has now.

    A key of an older key version is replaced (recordings outlive key changes); a key of
    this version that its request does not give means a hand edit, which would never match.
    Requests with redacted values cannot be checked and are taken as they are.
    """
    if line.request is None or REDACTED.encode() in orjson.dumps(line.request):
        return line
    key = key_of(line.request)
    if key == line.key:
        return line
    if line.key.rsplit(":", 1)[-1].startswith(f"{KEY_VERSION}-"):
        raise RecordingError(
            path,
            number,
            f"the request does not give the key {line.key} but {key}: was it edited by hand? "
            "Re-record the test, or set the key to the one given",
        )
    line.key = key
    return line


def dump_line(line: Line) -> bytes:
    """Return one line of a recording file (without its newline)."""
    entry = line.entry
    answer = orjson.loads(entry.payload) if entry.kind == "json" else entry.payload
    usage = [entry.prompt_tokens, entry.completion_tokens, entry.cached_tokens]
    usage.append(entry.written_tokens)
    values = (FORMAT_VERSION, line.key, line.test, line.request, entry.kind, entry.model)
    parts = [orjson.dumps(v, option=_SORTED) for v in (*values, usage, answer)]
    pairs = zip(_FIELDS, parts, strict=True)
    return b"{" + b",".join(b'"%s":%s' % (f.encode(), p) for f, p in pairs) + b"}"


def _problem(data: Any) -> str | None:
    """Return what is wrong with a parsed line, or ``None``."""
    if not isinstance(data, dict):
        return f"a line must be a JSON object, not {type(data).__name__}"
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        return f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    if not isinstance(data["key"], str) or not data["key"]:
        return f"key must be a non-empty string, not {data['key']!r}"
    if not isinstance(data["test"], str):
        return f"test must be a string, not {data['test']!r}"
    request = data["request"]
    if request is not None and not (
        isinstance(request, dict)
        and isinstance(request.get("endpoint"), str)
        and isinstance(request.get("params"), dict)
    ):
        return "request must be null or an object with an endpoint and params"
    shape = _KINDS.get(data["kind"]) if isinstance(data["kind"], str) else None
    if shape is None:
        return f"unknown kind {data['kind']!r}; known: {', '.join(_KINDS)}"
    if not isinstance(data["answer"], shape):
        return f"a {data['kind']!r} answer must be a {shape.__name__}"
    if data["model"] is not None and not isinstance(data["model"], str):
        return f"model must be a string or null, not {data['model']!r}"
    usage = data["usage"]
    if not (
        isinstance(usage, list)
        and len(usage) == 4
        and all(type(n) is int and n >= 0 for n in usage)
    ):
        return f"usage must be four token counts, not {usage!r}"
    return None


def parse_line(text: bytes, path: Path, number: int, created: float) -> Line:
    """Return the recorded answer on one line of a recording file.

    :param created: the time the answers are dated (a recording keeps no dates, so that
        re-recording an unchanged answer leaves its line unchanged).
    :raises RecordingError: the line is not JSON, was written by another format version,
        or a field is missing or of the wrong type (a hand edit gone wrong).
    """
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RecordingError(path, number, f"not valid JSON ({exc})") from None
    version = data.get("v") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version < FORMAT_VERSION:
            raise OutdatedLine(
                path,
                number,
                f"recorded in format {version}, which this llmcache no longer reads "
                f"(it reads format {FORMAT_VERSION}): re-record with --llmcache=record",
            )
        elif isinstance(version, int):
            problem = (
                f"recorded in format {version} by a newer llmcache (this one reads format "
                f"{FORMAT_VERSION}): upgrade llmcache or re-record with --llmcache=record"
            )
        else:
            problem = f"no format version (field 'v'); this llmcache reads {FORMAT_VERSION}"
        raise RecordingError(path, number, problem)
    wrong = _problem(data)
    if wrong is not None:
        raise RecordingError(path, number, wrong)
    kind, answer = data["kind"], data["answer"]
    payload = orjson.dumps(answer) if kind == "json" else answer
    usage = data["usage"]
    entry = Entry("", created, None, kind, payload, data["model"], *usage)
    return _rekeyed(Line(data["key"], data["test"], data["request"], entry), path, number)
