"""Why a request missed: the nearest recorded request and the fields that differ.

Requests are compared as recordings hold them (:func:`~llmcache.testmode.lines.request_record`):
the endpoint, the upstream and the arguments. Nearest means: same endpoint and model
first, then same upstream, then the fewest differing fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

__all__ = ["Difference", "Nearest", "differences", "nearest", "path_text"]

_MISSING: Any = object()
_WIDTH = 80


@dataclass(frozen=True, slots=True)
class Difference:
    """One field that differs: where, and its value in each request (``None`` for
    absent is told apart from JSON null in :meth:`text`)."""

    path: str
    mine: Any
    theirs: Any

    def text(self) -> str:
        """Return ``"messages[1].content: 'Hi' != 'Hello'"`` (this request's value first)."""
        return f"{self.path}: {_show(self.mine)} != {_show(self.theirs)}"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    text = repr(value)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def path_text(parts: Iterable[str | int]) -> str:
    """Return a field path as Python would index it: ``messages[1].content``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _walk(mine: Any, theirs: Any, path: tuple[str | int, ...]) -> Iterator[Difference]:
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for name in sorted(mine.keys() | theirs.keys()):
            yield from _walk(mine.get(name, _MISSING), theirs.get(name, _MISSING), (*path, name))
    elif isinstance(mine, list) and isinstance(theirs, list):
        for index in range(max(len(mine), len(theirs))):
            left = mine[index] if index < len(mine) else _MISSING
            right = theirs[index] if index < len(theirs) else _MISSING
            yield from _walk(left, right, (*path, index))
    elif mine != theirs or type(mine) is not type(theirs):
        yield Difference(path_text(path) or "(request)", mine, theirs)


def differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[Difference]:
    """Return the fields in which two recorded requests differ, arguments by their own
    path (``messages[1].content``), the rest by name (``endpoint``, ``upstream``)."""
    head = [
        Difference(name, mine.get(name, _MISSING), theirs.get(name, _MISSING))
        for name in ("endpoint", "upstream", "organization", "project", "scope")
        if mine.get(name) != theirs.get(name)
    ]
    return head + list(_walk(mine.get("params", {}), theirs.get("params", {}), ()))


@dataclass(frozen=True, slots=True)
class Nearest:
    """A recorded request close to the one that missed.

    :param key: its logical key.
    :param test: the test that recorded it ("" where the store does not say).
    :param request: the recorded request.
    :param differences: how the missed request differs from it.
    """

    key: str
    test: str
    request: dict[str, Any]
    differences: list[Difference]


def _model(request: dict[str, Any]) -> Any:
    params = request.get("params")
    return params.get("model") if isinstance(params, dict) else None


def _likeness(diffs: list[Difference]) -> float:
    """How alike the differing values are (0..1 each, added up): a reworded prompt is
    nearer than another prompt."""
    return sum(
        SequenceMatcher(None, repr(d.mine)[:500], repr(d.theirs)[:500]).ratio() for d in diffs
    )


def nearest(
    request: dict[str, Any],
    recorded: Iterable[tuple[str, str, dict[str, Any]]],
    limit: int = 3,
    test: str = "",
) -> list[Nearest]:
    """Return up to ``limit`` recorded requests nearest to ``request``, nearest first.

    :param recorded: ``(key, test, recorded request)`` triples.
    :param test: the test asking: among equally near requests, its own come first.
    """
    ranked = []
    for key, by, other in recorded:
        diffs = differences(request, other)
        rank = (
            other.get("endpoint") != request.get("endpoint") or _model(other) != _model(request),
            other.get("upstream") != request.get("upstream"),
            len(diffs),
            by != test,
            -_likeness(diffs),
            key,
            by,
        )
        ranked.append((rank, Nearest(key, by, other, diffs)))
    ranked.sort(key=lambda pair: pair[0])
    return [near for _, near in ranked[:limit]]
