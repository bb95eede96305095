"""Verifiers: a last check on a semantic candidate that passed every other one.

:class:`EmbedderAgreement` asks a second embedder for its opinion. The default embedder
(WordLlama) averages token vectors, so its score is close to word overlap: a question with
one more qualifier ("daily life in Saudi Arabia" / "... for women") scores as high as a
paraphrase. A contextual encoder such as all-MiniLM-L6-v2 weighs the words in their
sentence; serving only when both embedders agree removes false hits that no word-level check
tells apart from paraphrases. It runs only on a miss, on the few candidates that passed the
threshold and the checks, and keeps the vectors of recent questions, so a candidate already
seen costs no second embedding.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

__all__ = ["EmbedderAgreement"]

BATCH = 256


class EmbedderAgreement:
    """Serve a candidate only when a second embedder scores the pair at or above ``threshold``.

    Give it as ``semantic={"threshold": ..., "verifier": EmbedderAgreement("minilm", 0.9)}``,
    and to ``calibrate(..., verifier=...)`` so that the threshold is measured with it.

    :param embedder: a registered embedder's name (built on first use) or an embedder object.
    :param threshold: the least cosine similarity under that embedder, in (0, 1].
    :param cache_size: how many questions' vectors are kept.
    :param embedder_options: keywords for the embedder's factory, when it is a name.
    :raises ValueError: the threshold or the cache size is out of range.
    """

    def __init__(
        self,
        embedder: Any = "minilm",
        threshold: float = 0.9,
        *,
        cache_size: int = 4096,
        embedder_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"the verifier's threshold must be a number, not {threshold!r}")
        if not 0 < threshold <= 1:
            raise ValueError(f"the verifier's threshold must be in (0, 1], not {threshold!r}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, not {cache_size!r}")
        self.threshold = float(threshold)
        self._spec = embedder
        self._options = dict(embedder_options or {})
        self._model: Any = None if isinstance(embedder, str) else embedder
        self._vectors: OrderedDict[str, Any] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Any:
        """The second embedder, built on first use.

        :raises ConfigError: its name is not registered.
        """
        if self._model is None:
            from llmcache._plugins import get_registry

            model = get_registry().embedder(self._spec)(**self._options)
            with self._lock:
                if self._model is None:
                    self._model = model
        return self._model

    @property
    def name(self) -> str:
        """The second embedder's model name and the threshold (what a calibration records)."""
        return f"{self.embedder.name}>={self.threshold:g}"

    def _embed(self, texts: Sequence[str]) -> Any:
        """Return unit vectors of ``texts``, from the kept ones where possible."""
        import numpy as np

        with self._lock:
            known = {t: self._vectors[t] for t in texts if t in self._vectors}
            for text in known:
                self._vectors.move_to_end(text)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        for at in range(0, len(missing), BATCH):
            chunk = missing[at : at + BATCH]
            rows = np.asarray(self.embedder.embed(chunk), dtype=np.float32)
            if rows.ndim != 2 or rows.shape[0] != len(chunk):
                raise ValueError(
                    f"the verifier's embedder returned shape {rows.shape} for {len(chunk)} texts"
                )
            rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            known.update(zip(chunk, rows, strict=True))
            with self._lock:
                for text, row in zip(chunk, rows, strict=True):
                    self._vectors[text] = row
                while len(self._vectors) > self._size:
                    self._vectors.popitem(last=False)
        return np.stack([known[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def similarities(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Return the second embedder's cosine similarity of each pair."""
        if not pairs:
            return []
        vectors = self._embed([text for pair in pairs for text in pair])
        return [float(v) for v in (vectors[0::2] * vectors[1::2]).sum(axis=1)]

    def agree(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Tell, per pair, whether the second embedder scores it at or above the threshold."""
        return [s >= self.threshold for s in self.similarities(pairs)]

    def __call__(self, question: str, candidate: str, similarity: float) -> bool:
        """The verifier hook: ``similarity`` is the first embedder's, and is not used."""
        return self.agree([(question, candidate)])[0]

    def __repr__(self) -> str:
        spec = self._spec if isinstance(self._spec, str) else type(self._spec).__name__
        return f"EmbedderAgreement({spec!r}, {self.threshold!r})"
