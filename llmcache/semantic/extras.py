"""Importing what an embedder needs, or saying which extra brings it."""

from __future__ import annotations

import importlib
from typing import Any

from llmcache.errors import MissingExtraError

__all__ = ["need"]


def need(module: str, extra: str) -> Any:
    """Import ``module``, or raise :class:`~llmcache.MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError("this embedder", extra, module.split(".")[0]) from exc
