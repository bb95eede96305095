"""Pick a semantic threshold from labelled question pairs, with a bound on false hits.

For every threshold, a pair is *served* when its similarity reaches the threshold and it
passes the answer-token and length checks; a served pair labelled "not the same" is a false
hit. :func:`calibrate` returns the loosest threshold whose one-sided 95% Wilson upper bound
on the false-hit rate (false hits / served) is within the target, with the precision and
recall measured there.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcache.semantic.checks import length_ok, same_answer_tokens
from llmcache.semantic.config import DEFAULT_LENGTH_RATIO

__all__ = ["CalibrationError", "Pair", "calibrate", "load_pairs", "similarities", "wilson_upper"]

Z95 = 1.6448536269514722  # one-sided 95%
BATCH = 512


class CalibrationError(ValueError):
    """The pairs allow no threshold within the target, or cannot be read."""


@dataclass(frozen=True, slots=True)
class Pair:
    """Two questions and whether they ask the same thing."""

    a: str
    b: str
    same: bool


def wilson_upper(failures: int, trials: int, z: float = Z95) -> float:
    """Return the Wilson score upper bound of a proportion (1.0 when there are no trials)."""
    if trials <= 0:
        return 1.0
    p = failures / trials
    denominator = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return min(1.0, (centre + spread) / denominator)


def load_pairs(path: str | Path) -> list[Pair]:
    """Read JSON lines ``{"a", "b", "same"}`` (gzip-compressed when the name ends in .gz).

    :raises CalibrationError: the file cannot be read or a line is not a pair (the message
        names the line).
    """
    path = Path(path)
    opener: Any = gzip.open if path.suffix == ".gz" else open
    pairs = []
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                    a, b, same = item["a"], item["b"], item["same"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise CalibrationError(f"{path}:{number} is not a pair: {exc}") from None
                if not isinstance(a, str) or not isinstance(b, str) or not isinstance(same, bool):
                    raise CalibrationError(f"{path}:{number}: a and b must be text, same a bool")
                pairs.append(Pair(a, b, same))
    except OSError as exc:
        raise CalibrationError(f"cannot read the pairs {str(path)!r}: {exc}") from exc
    if not pairs:
        raise CalibrationError(f"no pairs in {str(path)!r}")
    return pairs


def similarities(embedder: Any, pairs: Sequence[Pair]) -> Any:
    """Return the cosine similarity of each pair under ``embedder`` (a numpy array)."""
    import numpy as np

    def vectors(texts: list[str]) -> Any:
        rows = [
            np.asarray(embedder.embed(texts[i : i + BATCH]), dtype=np.float32)
            for i in range(0, len(texts), BATCH)
        ]
        matrix = np.concatenate(rows)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.maximum(norms, 1e-12)

    a = vectors([p.a for p in pairs])
    b = vectors([p.b for p in pairs])
    return (a * b).sum(axis=1)


def passes_checks(
    pairs: Iterable[Pair],
    max_length_ratio: float = DEFAULT_LENGTH_RATIO,
    verifier: Any = None,
    scores: Any = None,
    floor: float = 0.0,
) -> list[bool]:
    """Return, per pair, whether it passes the answer-token and length checks.

    :param verifier: a verifier too (see :data:`~llmcache.semantic.Verifier`); one with an
        ``agree(pairs)`` method, such as :class:`~llmcache.semantic.EmbedderAgreement`, is
        asked in batches.
    :param scores: the pairs' similarities; with ``floor``, the verifier is asked only about
        pairs scoring at least ``floor`` (the others count as failing: no threshold below
        ``floor`` can then be chosen).
    """
    pairs = list(pairs)
    checked = [
        same_answer_tokens(p.a, p.b) and length_ok(p.a, p.b, max_length_ratio) for p in pairs
    ]
    if verifier is None:
        return checked
    asked = [
        i for i, ok in enumerate(checked) if ok and (scores is None or float(scores[i]) >= floor)
    ]
    agree = getattr(verifier, "agree", None)
    if callable(agree):
        verdicts = list(agree([(pairs[i].a, pairs[i].b) for i in asked]))
    else:
        verdicts = [
            bool(verifier(pairs[i].a, pairs[i].b, float(scores[i]) if scores is not None else 1.0))
            for i in asked
        ]
    out = [False] * len(pairs)
    for i, verdict in zip(asked, verdicts, strict=True):
        out[i] = bool(verdict)
    return out


def evaluate(
    pairs: Sequence[Pair], scores: Any, checked: Sequence[bool], threshold: float
) -> dict[str, Any]:
    """Return what serving at ``threshold`` does on these pairs."""
    served = [p for p, s, ok in zip(pairs, scores, checked, strict=True) if ok and s >= threshold]
    false_hits = sum(not p.same for p in served)
    positives = sum(p.same for p in pairs)
    return {
        "threshold": threshold,
        "served": len(served),
        "false_hits": false_hits,
        "precision": (len(served) - false_hits) / len(served) if served else 1.0,
        "recall": (len(served) - false_hits) / positives if positives else 0.0,
        "false_hit_upper_bound": wilson_upper(false_hits, len(served)),
    }


def choose(
    pairs: Sequence[Pair], scores: Any, checked: Sequence[bool], max_false_hits: float
) -> float:
    """Return the loosest threshold whose false-hit upper bound is within the target.

    :raises CalibrationError: no threshold is.
    """
    ranked = sorted(
        ((float(s), p.same) for p, s, ok in zip(pairs, scores, checked, strict=True) if ok),
        key=lambda item: -item[0],
    )
    best = None
    tightest = (1.0, 1.0)  # the least bound any threshold reaches, and that threshold
    false_hits = 0
    for served, (score, same) in enumerate(ranked, start=1):
        false_hits += not same
        if served < len(ranked) and ranked[served][0] == score:
            continue  # a threshold serves every pair of a tie
        bound = wilson_upper(false_hits, served)
        tightest = min(tightest, (bound, score))
        if bound <= max_false_hits:
            best = score
    if best is None:
        raise CalibrationError(
            f"no threshold keeps the 95% upper bound on false hits within {max_false_hits}: "
            f"the tightest these pairs allow is {tightest[0]:.4f} (threshold {tightest[1]:.4f}); "
            "give more or cleaner pairs, or a looser target"
        )
    return best


def calibrate(
    pairs: Sequence[Pair] | str | Path,
    embedder: Any = "wordllama",
    *,
    max_false_hits: float = 0.01,
    max_length_ratio: float = DEFAULT_LENGTH_RATIO,
    verifier: Any = None,
) -> dict[str, Any]:
    """Measure and return a calibration record (what ``llmcache calibrate`` writes).

    :param pairs: labelled pairs, or the path of a JSON-lines file of them.
    :param embedder: a registered embedder's name, or an embedder object.
    :param max_false_hits: the target for the 95% upper bound on the false-hit rate.
    :param max_length_ratio: the length bound the matcher will use.
    :param verifier: the verifier the matcher will use (an
        :class:`~llmcache.semantic.EmbedderAgreement`, say): a pair it rejects is never
        served, so the threshold is measured with it. The record names it (``verifier``);
        give the matcher the same one.
    :return: ``threshold``, ``precision``, ``recall``, ``false_hit_upper_bound``, ``pairs``,
        ``embedder`` and the counts behind them.
    :raises CalibrationError: no threshold is within the target, or the pairs are unreadable.
    :raises ConfigError: the embedder is not registered.
    """
    if not 0 < max_false_hits < 1:
        raise CalibrationError(f"max_false_hits must be in (0, 1), not {max_false_hits!r}")
    if isinstance(pairs, (str, Path)):
        pairs = load_pairs(pairs)
    model = _embedder(embedder)
    scores = similarities(model, pairs)
    checked = passes_checks(pairs, max_length_ratio, verifier, scores)
    threshold = choose(pairs, scores, checked, max_false_hits)
    record = evaluate(pairs, scores, checked, threshold)
    record.update(
        pairs=len(pairs),
        positives=sum(p.same for p in pairs),
        embedder=embedder if isinstance(embedder, str) else str(model.name),
        embedder_model=str(model.name),
        max_false_hits=max_false_hits,
        max_length_ratio=max_length_ratio,
        verifier=None if verifier is None else str(getattr(verifier, "name", repr(verifier))),
        confidence=0.95,
        bound="wilson, one-sided",
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    return record


def _embedder(embedder: Any) -> Any:
    if not isinstance(embedder, str):
        return embedder
    from llmcache._plugins import get_registry

    return get_registry().embedder(embedder)()
