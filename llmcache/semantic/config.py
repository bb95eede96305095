"""The ``semantic=`` option of ``CachedClient`` and ``llmcache.http_client``, checked.

``{"calibration": "calibration.json"}`` takes the threshold from a record written by
``llmcache calibrate``; ``{"threshold": 0.93}`` gives one outright. Without either,
semantic matching refuses to start: a threshold nobody measured is how semantic caches
serve wrong answers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcache.errors import ConfigError

__all__ = ["KNOWN_KEYS", "SemanticConfig", "Verifier", "parse_semantic"]

Verifier = Callable[[str, str, float], bool]
"""``verifier(question, candidate, similarity) -> bool``: the last word on a candidate that
passed every other check (an LLM judge for scores near the threshold, for instance)."""

KNOWN_KEYS = (
    "allow_sampled",
    "calibration",
    "candidates",
    "embedder",
    "embedder_options",
    "max_length_ratio",
    "sync_interval",
    "threshold",
    "verifier",
)
DEFAULT_LENGTH_RATIO = 2.5


@dataclass(frozen=True, slots=True)
class SemanticConfig:
    """The semantic matcher's settings.

    :param threshold: the least similarity served, or ``None`` when the calibration record
        could not be read (``problem`` says why; the semantic step is then skipped).
    :param embedder: a registered embedder's name, or an embedder object.
    :param embedder_options: keywords for the embedder's factory.
    :param allow_sampled: match requests that give ``temperature > 0`` too.
    :param max_length_ratio: the longer question is at most this many times the shorter.
    :param verifier: see :data:`Verifier`.
    :param candidates: how many nearest questions are checked.
    :param sync_interval: seconds between two listings of a shared tier's vectors.
    :param record: the calibration record, when one was given.
    :param problem: why the calibration record cannot be used, or ``None``.
    """

    threshold: float | None
    embedder: Any = "wordllama"
    embedder_options: Mapping[str, Any] | None = None
    allow_sampled: bool = False
    max_length_ratio: float = DEFAULT_LENGTH_RATIO
    verifier: Verifier | None = None
    candidates: int = 4
    sync_interval: float = 2.0
    record: Mapping[str, Any] | None = None
    problem: str | None = None


def _threshold(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= 1
    ):
        raise ValueError(f"{where} must be a number in (0, 1], not {value!r}")
    return float(value)


def load_record(path: str | Path) -> dict[str, Any]:
    """Read a calibration record written by ``llmcache calibrate``.

    :raises ValueError: the file is missing, not JSON, or lacks a valid ``threshold``.
    """
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the calibration record {str(path)!r}: {exc}") from exc
    if not isinstance(record, dict):
        raise ValueError(f"the calibration record {str(path)!r} is not a JSON object")
    _threshold(record.get("threshold"), f"the threshold in {str(path)!r}")
    embedder = record.get("embedder")
    if embedder is not None and not isinstance(embedder, str):
        raise ValueError(f"the embedder in {str(path)!r} is not a name: {embedder!r}")
    return record


def parse_semantic(option: Any) -> SemanticConfig | None:
    """Check the ``semantic=`` option and return the settings (``None`` when not given).

    A calibration record that cannot be read does not fail construction: the settings then
    carry the ``problem`` and the semantic step is skipped, with a warning, while exact
    caching goes on.

    :raises ConfigError: the option is malformed, or names neither a calibration record nor
        a threshold (the message names the bad value and the accepted keys).
    """
    if option is None or option is False:
        return None
    if not isinstance(option, Mapping):
        raise ConfigError(
            f"semantic must be a dict such as {{'calibration': 'calibration.json'}} or "
            f"{{'threshold': 0.93}}, not {option!r}"
        )
    unknown = sorted(set(option) - set(KNOWN_KEYS))
    if unknown:
        raise ConfigError(f"unknown semantic option {unknown[0]!r}; known: {', '.join(KNOWN_KEYS)}")
    if option.get("calibration") is None and option.get("threshold") is None:
        raise ConfigError(
            "semantic matching needs a measured threshold: give semantic={'calibration': "
            "'calibration.json'} (written by 'llmcache calibrate') or semantic={'threshold': 0.93}"
        )
    settings: dict[str, Any] = {}
    try:
        embedder = option.get("embedder")
        if (
            embedder is not None
            and not isinstance(embedder, str)
            and not callable(getattr(embedder, "embed", None))
        ):
            raise ValueError(f"semantic embedder must be a name or an embedder, not {embedder!r}")
        if option.get("threshold") is not None:
            settings["threshold"] = _threshold(option["threshold"], "semantic threshold")
        else:
            path = option["calibration"]
            if not isinstance(path, (str, Path)):
                raise ValueError(f"semantic calibration must be a file path, not {path!r}")
            try:
                record = load_record(path)
            except ValueError as exc:
                settings.update(threshold=None, problem=str(exc))
            else:
                named = record.get("embedder")
                if embedder is None and named is not None:
                    embedder = named
                if not isinstance(embedder, str) and embedder is not None:
                    # an embedder object: its name against the model the record measured
                    named = record.get("embedder_model", named)
                    embedder_name = getattr(embedder, "name", None)
                else:
                    embedder_name = embedder
                if named is not None and embedder_name is not None and named != embedder_name:
                    settings.update(
                        threshold=None,
                        problem=f"the calibration record {str(path)!r} was measured with the "
                        f"embedder {named!r}, not {embedder_name!r}",
                    )
                else:
                    settings.update(threshold=float(record["threshold"]), record=record)
        if embedder is not None:
            settings["embedder"] = embedder
        for name, kind in (("allow_sampled", bool), ("embedder_options", Mapping)):
            if option.get(name) is not None and not isinstance(option[name], kind):
                raise ValueError(f"semantic {name} must be a {kind.__name__}, not {option[name]!r}")
            if option.get(name) is not None:
                settings[name] = option[name]
        for name, low in (("max_length_ratio", 1.0), ("sync_interval", 0.0), ("candidates", 1)):
            value = option.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
                raise ValueError(f"semantic {name} must be a number >= {low}, not {value!r}")
            settings[name] = int(value) if name == "candidates" else float(value)
        verifier = option.get("verifier")
        if verifier is not None and not callable(verifier):
            raise ValueError(f"semantic verifier must be callable, not {verifier!r}")
        settings["verifier"] = verifier
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return SemanticConfig(**settings)
