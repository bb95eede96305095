"""Opt-in semantic matching: serve a checked near match after an exact miss.

Nothing here imports numpy or a model until a cache built with ``semantic=`` uses it.
"""

from .calibration import CalibrationError, Pair, calibrate, load_pairs, wilson_upper
from .checks import length_ok, same_answer_tokens
from .config import SemanticConfig, Verifier, load_record, parse_semantic
from .embedders import ClientEmbedder, Embedder, WordLlamaEmbedder
from .matcher import Near, SemanticMatcher
from .verifiers import EmbedderAgreement

__all__ = [
    "CalibrationError",
    "ClientEmbedder",
    "Embedder",
    "EmbedderAgreement",
    "Near",
    "Pair",
    "SemanticConfig",
    "SemanticMatcher",
    "Verifier",
    "WordLlamaEmbedder",
    "calibrate",
    "length_ok",
    "load_pairs",
    "load_record",
    "parse_semantic",
    "same_answer_tokens",
    "wilson_upper",
]
