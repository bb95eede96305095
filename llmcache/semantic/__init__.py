"""Opt-in semantic matching: serve a checked near match after an exact miss.

Nothing here imports numpy or a model until a cache built with ``semantic=`` uses it.
"""

from .checks import length_ok, same_answer_tokens
from .config import SemanticConfig, Verifier, load_record, parse_semantic
from .embedders import ClientEmbedder, Embedder, WordLlamaEmbedder

__all__ = [
    "ClientEmbedder",
    "Embedder",
    "SemanticConfig",
    "Verifier",
    "WordLlamaEmbedder",
    "length_ok",
    "load_record",
    "parse_semantic",
    "same_answer_tokens",
]
