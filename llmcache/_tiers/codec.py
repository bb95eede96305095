"""Cache entries on the wire: a versioned msgpack envelope, compressed and optionally signed.

Layout (msgpack array)::

    ["llmc", VERSION, header, body, signature]
    header = [key, created, expires, kind, model, prompt_tokens, completion_tokens, codec,
              cached_tokens, written_tokens,   (only when either is not 0, or a request follows)
              request]                         (only when the entry carries its request)
    body   = the payload itself (codec 2), or msgpack(payload) as bytes: zlib-compressed
             when codec == 1, raw when codec == 0 (signed entries always carry bytes);
             codec + 8 says the entry is ``null_free`` (see :class:`Entry`)

The header names the physical key the entry was written for, so bytes copied (or forged)
under another key are rejected. With a signing key, ``signature`` is an HMAC-SHA256 over
the header and body; without one it is empty. Nothing here can run code: msgpack decodes to
plain data only.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

import msgpack
import orjson

__all__ = [
    "COMPRESS_THRESHOLD",
    "VERSION",
    "Codec",
    "CorruptEntry",
    "Entry",
    "describe_failure",
]

MAGIC = "llmc"
VERSION = 1
COMPRESS_THRESHOLD = 4096
_RAW, _ZLIB, _INLINE = 0, 1, 2
_CODEC_FIELD = 7  # where the header says which of those the body is
_NULL_FREE = 8  # added to the codec field of a null-free entry


class CorruptEntry(ValueError):
    """Bytes under a cache key that are not a valid entry for it."""


def describe_failure(exc: BaseException) -> str:
    """Say why an entry was rejected without quoting it: validation errors echo the values
    they rejected, and an entry's values are prompts and answers, which logs never hold."""
    count = getattr(exc, "error_count", None)
    if callable(count):
        return f"{type(exc).__name__} ({count()} field error{'s' if count() != 1 else ''})"
    return type(exc).__name__


@dataclass(slots=True)
class Entry:
    """One cached answer.

    :param key: the physical key it was written for.
    :param created: Unix time of the upstream answer.
    :param expires: Unix time after which it is stale, or ``None``.
    :param kind: ``"response"`` (one SDK object as plain data), ``"json"`` (one SDK object
        as the JSON text the server sent), ``"chunks"`` (a stream's chunks) or
        ``"embedding"`` (one input's vector).
    :param payload: the plain data (dicts, lists, strings, numbers), or the JSON text.
    :param request: the canonical request that produced the answer (endpoint, upstream,
        arguments; see :func:`llmcache._rules.canonical.request_record`), kept only by caches built
        with ``keep_requests=True``; ``None`` otherwise.
    :param null_free: its key is the default digest of a request whose canonical JSON holds
        no ``null``. A request whose digest without the NaN check matches it has the same
        JSON, so holds no NaN (orjson would have written ``null``): the check is skipped.
    """

    key: str
    created: float
    expires: float | None
    kind: str
    payload: Any
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, those read from the provider's cache
    written_tokens: int = 0  # of the prompt tokens, those written to it
    request: dict[str, Any] | None = None
    null_free: bool = False

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def data(self) -> Any:
        """Return the payload as plain data (a ``"json"`` entry's text parsed)."""
        return orjson.loads(self.payload) if self.kind == "json" else self.payload

    def remaining(self, now: float) -> float | None:
        """Seconds until it goes stale (negative once stale), or ``None`` for never."""
        return None if self.expires is None else self.expires - now


# "langchain": a LangChain cache entry, generations as langchain_core's own JSON text
KINDS = {"response": dict, "json": bytes, "chunks": list, "embedding": dict, "langchain": str}
MAX_BODY = 64 * 1024 * 1024  # an inflated body larger than this is a corrupt (or hostile) entry


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj()
    data = inflater.decompress(body, MAX_BODY)
    if inflater.unconsumed_tail:
        raise CorruptEntry(f"entry body inflates beyond {MAX_BODY} bytes")
    return data


def _validate(entry: Entry) -> None:
    """Reject an entry whose fields are not of their types (a forged or damaged header)."""
    shape = KINDS.get(entry.kind) if isinstance(entry.kind, str) else None
    if shape is None:
        raise CorruptEntry(f"unknown entry kind {entry.kind!r}; known: {', '.join(KINDS)}")
    if not isinstance(entry.payload, shape):
        raise CorruptEntry(f"a {entry.kind!r} entry holds a {type(entry.payload).__name__}")
    if entry.kind == "chunks" and not all(isinstance(c, dict) for c in entry.payload):
        raise CorruptEntry("a 'chunks' entry holds something other than chunks")
    if entry.model is not None and not isinstance(entry.model, str):
        raise CorruptEntry(f"entry model {entry.model!r} is not a string")
    if entry.request is not None and not isinstance(entry.request, dict):
        raise CorruptEntry(f"an entry's request is a {type(entry.request).__name__}, not a map")
    counts = (entry.prompt_tokens, entry.completion_tokens, entry.cached_tokens)
    for tokens in (*counts, entry.written_tokens):
        if type(tokens) is not int or tokens < 0:
            raise CorruptEntry(f"entry token count {tokens!r} is not a count")


class Codec:
    """Encode and decode entries.

    :param signing_key: when given, sign entries and reject unsigned or badly signed ones.
    :param compress_threshold: compress bodies larger than this many bytes.
    """

    def __init__(
        self, signing_key: str | bytes | None = None, compress_threshold: int = COMPRESS_THRESHOLD
    ) -> None:
        if isinstance(signing_key, str):
            signing_key = signing_key.encode()
        self._signing_key = signing_key or None
        self.compress_threshold = compress_threshold

    def _sign(self, header: list[Any], body: bytes) -> bytes:
        assert self._signing_key is not None
        mac = hmac.new(self._signing_key, msgpack.packb(header), hashlib.sha256)
        mac.update(body)
        return mac.digest()

    def encode(self, entry: Entry, expires: float | EllipsisType | None = ...) -> bytes:
        """Return the bytes to store for ``entry``.

        :param expires: the expiry to write instead of ``entry.expires`` (one entry goes to
            tiers of different TTLs).
        """
        flags = _NULL_FREE if entry.null_free else 0
        header = [
            entry.key,
            entry.created,
            entry.expires if expires is ... else expires,
            entry.kind,
            entry.model,
            entry.prompt_tokens,
            entry.completion_tokens,
            _INLINE | flags,
        ]
        if entry.cached_tokens or entry.written_tokens or entry.request is not None:
            header += [entry.cached_tokens, entry.written_tokens]  # older readers take 8
            if entry.request is not None:  # and 10: they never see it
                header.append(entry.request)
        if self._signing_key is None:  # the payload inline: one unpack on the hit path
            data: bytes = msgpack.packb([MAGIC, VERSION, header, entry.payload, b""])
            if len(data) <= self.compress_threshold:
                return data
        body: bytes = msgpack.packb(entry.payload)
        header[_CODEC_FIELD] = _RAW | flags
        if len(body) > self.compress_threshold:
            body, header[_CODEC_FIELD] = zlib.compress(body, 6), _ZLIB | flags
        signature = self._sign(header, body) if self._signing_key else b""
        return msgpack.packb([MAGIC, VERSION, header, body, signature])

    def decode(self, data: bytes, key: str) -> Entry:
        """Return the entry in ``data``, checking it was written for ``key``.

        :raises CorruptEntry: not an entry, another version, another key, or a bad signature.
        """
        try:
            magic, version, header, body, signature = msgpack.unpackb(data)
            short = len(header) == 8  # no provider-cached tokens, no request: most entries
            if short:
                stored_key, created, expires, kind, model, prompt, completion, codec = header
                cached = written = 0
                request = None
            else:
                stored_key, created, expires, kind, model, prompt, completion, codec = header[:8]
                cached, written = header[8:10] if len(header) >= 10 else (0, 0)
                request = header[10] if len(header) > 10 else None
        except Exception as exc:
            raise CorruptEntry(f"not an llmcache entry: {exc}") from exc
        if magic != MAGIC or version != VERSION:
            raise CorruptEntry(f"not an llmcache entry of version {VERSION}: {magic!r} {version!r}")
        if stored_key != key:
            raise CorruptEntry("entry was written for another key")
        if self._signing_key is not None and not (
            isinstance(body, bytes)
            and isinstance(signature, bytes)
            and hmac.compare_digest(signature, self._sign(header, body))
        ):
            raise CorruptEntry("bad or missing signature")
        try:
            null_free = codec >= _NULL_FREE
            if null_free:
                codec -= _NULL_FREE
            if codec == _INLINE:
                payload = body
            elif codec == _ZLIB:
                payload = msgpack.unpackb(_inflate(body))
            elif codec == _RAW:
                payload = msgpack.unpackb(body)
            else:
                raise ValueError(f"unknown body codec {codec!r}")
            entry = Entry(
                stored_key,
                float(created),
                None if expires is None else float(expires),
                kind,
                payload,
                model,
                prompt,
                completion,
                cached,
                written,
                request,
                null_free,
            )
        except Exception as exc:
            raise CorruptEntry(f"corrupt entry body: {exc}") from exc
        # The common entry's fields checked here, every other entry's by _validate: 2% of a
        # SQLite hit's instructions (callgrind, as benchmarks/README.md counts them).
        if not (
            short
            and kind == "json"
            and type(payload) is bytes
            and (model is None or type(model) is str)
            and type(prompt) is int
            and type(completion) is int
            and prompt >= 0
            and completion >= 0
        ):
            _validate(entry)
        return entry
