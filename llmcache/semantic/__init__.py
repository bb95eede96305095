"""Opt-in semantic matching: serve a checked near match after an exact miss.

Nothing here imports numpy or a model until a cache built with ``semantic=`` uses it.
"""

from llmcache.semantic.calibration import (
    CalibrationError,
    Pair,
    calibrate,
    load_pairs,
    wilson_upper,
)
from llmcache.semantic.checks import length_ok, same_answer_tokens
from llmcache.semantic.config import SemanticConfig, Verifier, load_record, parse_semantic
from llmcache.semantic.embedders import ClientEmbedder, Embedder, WordLlamaEmbedder
from llmcache.semantic.matcher import Near, SemanticMatcher
from llmcache.semantic.verifiers import EmbedderAgreement

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
