"""The errors llmcache raises.

::

    LLMCacheError
     ├── ConfigError (also a ValueError)
     │    └── MissingExtraError (also an ImportError)
     ├── BackendError
     └── CacheMiss

Bad per-call options are plain ``TypeError`` (an unknown ``cache_*`` keyword) or
``ValueError`` (a bad value), raised before any upstream call.
"""

from __future__ import annotations

__all__ = ["BackendError", "CacheMiss", "ConfigError", "LLMCacheError", "MissingExtraError"]


class LLMCacheError(Exception):
    """Base class of every error llmcache raises on its own account."""

    __module__ = "llmcache"


class ConfigError(LLMCacheError, ValueError):
    """A client, tier URL, plugin or option is configured wrongly."""

    __module__ = "llmcache"


class MissingExtraError(ConfigError, ImportError):
    """A tier URL needs a driver that is not installed; the message names the extra."""

    __module__ = "llmcache"

    def __init__(self, what: str, extra: str, package: str) -> None:
        super().__init__(
            f"{what} needs the {package!r} package: install it with "
            f"`pip install 'llmcache[{extra}]'`"
        )
        self.extra = extra
        self.package = package


class BackendError(LLMCacheError):
    """A cache tier failed and the client was built with ``fail_open=False``."""

    __module__ = "llmcache"


class CacheMiss(LLMCacheError):
    """``only-if-cached`` was asked for and no usable entry exists."""

    __module__ = "llmcache"
