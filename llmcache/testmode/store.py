"""Recordings as a cache backend: ``recording:///path/to/test_module.jsonl``.

A :class:`RecordingStore` is an ordinary tier (registered by the
``llmcache_register_backends`` hook, as the memory backend is), so recording and replaying
go through the same engine as every other cache: keys, streaming replay, per-input
embeddings. It differs from other backends in one way: its file is meant to be read in
review, so it reads the entries it is given (the core's envelope, see
:mod:`llmcache._tiers.codec`) and writes their answers as JSON, beside the canonical request that
the cache reported for the key (``llmcache_on_store``).

Answers live in memory; :meth:`RecordingStore.flush` writes them under a file lock, merged
with what other processes wrote meanwhile (pytest-xdist workers), through a temporary file
renamed over the old one, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from llmcache._rules.keys import physical_key, split_physical_key
from llmcache._tiers.codec import Codec, Entry
from llmcache.backends import globs
from llmcache.backends.base import (
    BaseCacheBackend,
    StoredEntry,
    SyncToAsync,
    reject_unknown_options,
)
from llmcache.errors import ConfigError, MissingExtraError
from llmcache.hookspecs import RegisterBackend, hookimpl
from llmcache.testmode.lines import Line, OutdatedLine, RecordingError, dump_line, parse_line

__all__ = ["LOCK_NAME", "MODES", "RecordingStore", "open_recording"]

MODES = ("record", "replay", "strict", "off")
LOCK_NAME = ".llmcache.lock"
_CODEC = Codec()  # the plugin's caches are unsigned: entries are plain data


def _lock(directory: Path) -> Any:
    """Return the lock that serialises rewrites of the recordings in ``directory``."""
    try:
        import filelock
    except ImportError as exc:
        raise MissingExtraError("writing recordings", "pytest", "filelock") from exc
    return filelock.FileLock(directory / LOCK_NAME, timeout=60)


class RecordingStore(BaseCacheBackend):
    """The answers recorded in one file, and those recorded since it was read.

    :param path: the recording file (it need not exist yet).
    :param rewriting: drop the lines of an older format instead of raising
        :class:`OutdatedLine` (they are being recorded again); :attr:`outdated` counts them.
    :ivar mode: ``"record"`` (reads always miss, so every call goes upstream and is
        recorded), ``"replay"`` or ``"strict"`` (reads serve recordings).
    :ivar test: the node id of the running test, written beside what it records.
    """

    shared = False
    supports_scan = True

    def __init__(self, path: Path, *, rewriting: bool = False) -> None:
        self.path = path
        self.rewriting = rewriting
        self.outdated = 0
        self.mode = "replay"
        self.test = ""
        self._guard = threading.Lock()
        self._lines: dict[tuple[str, str], Line] = {}
        self._by_key: dict[str, list[Line]] = {}
        self._fresh: dict[tuple[str, str], Line] = {}  # recorded since the last flush
        self._rerecorded: set[str] = set()  # tests whose older lines a flush drops
        self._requests: dict[tuple[str, str], dict[str, Any]] = {}
        self._namespace = ""
        self.reload()

    # -- reading -----------------------------------------------------------------------

    def _read(self) -> dict[tuple[str, str], Line]:
        """Return the lines of the file on disk.

        :raises RecordingError: a line is damaged (the message names file and line).
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        lines: dict[tuple[str, str], Line] = {}
        now = time.time()
        for number, text in enumerate(data.splitlines(), start=1):
            if not text.strip():
                continue
            try:
                line = parse_line(text, self.path, number, now)
            except OutdatedLine:
                if not self.rewriting:
                    raise
                self.outdated += 1
                continue
            if (line.key, line.test) in lines:
                raise RecordingError(
                    self.path, number, f"key {line.key} is recorded twice for test {line.test}"
                )
            lines[line.key, line.test] = line
        return lines

    def reload(self) -> None:
        """Read the file again (what other processes wrote included), keeping what this
        process recorded since its last flush."""
        lines = self._read()
        with self._guard:
            for test in self._rerecorded:
                for pair in [p for p in lines if p[1] == test]:
                    del lines[pair]
            lines.update(self._fresh)
            self._lines = lines
            self._index()

    def _index(self) -> None:
        by_key: dict[str, list[Line]] = {}
        for line in self._lines.values():
            by_key.setdefault(line.key, []).append(line)
        self._by_key = by_key

    def lines(self) -> list[Line]:
        """Return every recorded answer, sorted by key and test."""
        with self._guard:
            return sorted(self._lines.values(), key=lambda line: (line.key, line.test))

    def find(self, key: str) -> Line | None:
        """Return the answer recorded for a logical key: the running test's own first,
        else one another test recorded."""
        candidates = self._by_key.get(key)
        if not candidates:
            return None
        for line in candidates:
            if line.test == self.test:
                return line
        return candidates[0]

    # -- a test's lifetime ---------------------------------------------------------------

    def begin(self, test: str, mode: str) -> None:
        """Start recording for ``test`` in ``mode``; ``record`` drops the test's older
        answers (they are replaced by what it records now)."""
        if mode not in MODES or mode == "off":
            raise ConfigError(f"unknown recording mode {mode!r}; known: record, replay, strict")
        self.test, self.mode = test, mode
        if mode == "record":
            with self._guard:
                self._rerecorded.add(test)
                for pair in [p for p in self._lines if p[1] == test and p not in self._fresh]:
                    del self._lines[pair]
                self._index()

    def note_request(self, key: str, request: dict[str, Any]) -> None:
        """Keep the canonical request of an answer stored under ``key`` by the running
        test (reported by the cache after the answer was stored)."""
        with self._guard:
            line = self._lines.get((key, self.test))
            if line is not None:
                line.request = request
            else:
                self._requests[key, self.test] = request

    @property
    def dirty(self) -> bool:
        """Whether a flush has something to write."""
        return bool(self._fresh or self._rerecorded)

    def flush(self) -> None:
        """Write what was recorded since the last flush, merged with the file as it is now
        (other processes may have written other tests' answers), atomically."""
        if not self.dirty:
            return
        if not self._fresh and not self.path.exists():  # nothing to write, nothing to drop
            self._rerecorded.clear()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _lock(self.path.parent):
            self.reload()
            body = b"".join(dump_line(line) + b"\n" for line in self.lines())
            if body:
                self._write(body)
            else:  # every test of the module was re-recorded without a call
                self.path.unlink(missing_ok=True)
            with self._guard:
                self._fresh.clear()
                self._rerecorded.clear()

    def _write(self, body: bytes) -> None:
        """Replace the file by ``body`` at once: readers see the old file or the new one."""
        handle, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    # -- the backend contract ------------------------------------------------------------

    def _logical(self, key: str) -> str:
        parts = split_physical_key(key)
        if parts is None:
            raise ValueError(f"{key!r} is not an llmcache key")
        self._namespace = parts[0]
        return parts[1]

    def get(self, key: str) -> bytes | None:
        if self.mode == "record":
            return None
        line = self.find(self._logical(key))
        if line is None:
            return None
        blob = line.blob
        if blob is None:  # encoded once: a replayed session reads each answer many times
            line.entry.key = key
            blob = line.blob = _CODEC.encode(line.entry)
        return blob

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        logical = self._logical(key)
        entry: Entry = _CODEC.decode(value, key)
        with self._guard:
            pair = (logical, self.test)
            request = self._requests.pop(pair, None)
            old = self._lines.get(pair)
            if request is None and old is not None:
                request = old.request
            line = Line(logical, self.test, request, entry, bytes(value))
            self._lines[pair] = self._fresh[pair] = line
            # one key's lines change: no need to index the whole file again
            same = [other for other in self._by_key.get(logical, ()) if other.test != self.test]
            self._by_key[logical] = [*same, line]

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        for key, value in items.items():
            self.set(key, value, ttl)

    def delete(self, keys: Sequence[str]) -> None:
        doomed = {self._logical(key) for key in keys}
        with self._guard:
            for pair in [p for p in self._lines if p[0] in doomed]:
                del self._lines[pair]
                self._fresh.pop(pair, None)
            self._index()

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        # Recordings keep no dates: older_than matches none of them.
        if older_than is not None:
            return 0
        match = globs.to_regex(pattern).match if pattern is not None else None
        namespace = self._namespace or "default"
        with self._guard:
            doomed = [
                p for p in self._lines if match is None or match(physical_key(namespace, p[0]))
            ]
            for pair in doomed:
                del self._lines[pair]
                self._fresh.pop(pair, None)
            self._index()
        return len(doomed)

    def scan(self, pattern: str | None = None) -> Iterator[StoredEntry]:
        match = globs.to_regex(pattern).match if pattern is not None else None
        namespace = self._namespace or "default"
        for line in self.lines():
            key = physical_key(namespace, line.key)
            if match is None or match(key):
                yield StoredEntry(key, len(dump_line(line)), line.entry.created, None)


_open: dict[Path, RecordingStore] = {}
_open_guard = threading.Lock()


def open_recording(path: Path | str, *, rewriting: bool = False) -> RecordingStore:
    """Return the store of a recording file, one per file and process.

    :param rewriting: it is opened to record: lines of an older format are dropped.
    :raises RecordingError: the file holds a damaged line (or, unless ``rewriting``, one of
        an older format).
    """
    resolved = Path(path).resolve()
    with _open_guard:
        store = _open.get(resolved)
        if store is None:
            store = _open[resolved] = RecordingStore(resolved, rewriting=rewriting)
        elif rewriting and not store.rewriting:
            store.rewriting = True
        return store


def adopt(store: RecordingStore) -> None:
    """Make ``store`` the process's store of its file (the one ``recording://`` URLs of that
    file open from now on)."""
    with _open_guard:
        _open[store.path.resolve()] = store


def flush_all() -> None:
    """Write what every open recording holds unwritten, then forget them all (the next
    open reads the file again)."""
    with _open_guard:
        stores = list(_open.values())
        _open.clear()
    for store in stores:
        store.flush()


def path_of(url: str) -> Path:
    """Return the file a ``recording://`` URL names.

    :raises ConfigError: the URL names no file.
    """
    parts = urlsplit(url)
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise ConfigError(f"{url!r} names no file: use recording:///path/to/recording.jsonl")
    return Path(path)


def from_url(url: str, **options: Any) -> RecordingStore:
    """Open the recording a ``recording:///path/file.jsonl`` URL names."""
    options.pop("timeout", None)  # in memory: never waits
    reject_unknown_options("recording://", options, ())
    return open_recording(path_of(url))


def async_from_url(url: str, **options: Any) -> SyncToAsync:
    """Open a recording for an async client (called inline: it never blocks)."""
    return SyncToAsync(from_url(url, **options), in_thread=False)


@hookimpl
def llmcache_register_backends(register: RegisterBackend) -> None:
    """Serve ``recording://``."""
    register("recording", from_url, async_factory=async_from_url)
