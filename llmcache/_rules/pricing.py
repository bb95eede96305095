"""Model prices, for the dollars a cache hit saved.

Prices are USD per million tokens, from the providers' public price lists as of
:data:`PRICES_AS_OF` (standard processing, short-context rates). ``cached_input`` is the
price of a prompt token read from the provider's prompt cache (OpenAI "cached input",
Anthropic "cache hits"). ``CachedClient(pricing={...})`` adds models or overrides these.

A model is matched exactly, then without a snapshot suffix (``gpt-4o-mini-2024-07-18`` is
priced as ``gpt-4o-mini``, ``claude-sonnet-4-5-20250929`` as ``claude-sonnet-4-5``,
``claude-3-5-haiku-latest`` as ``claude-3-5-haiku``). A model that is not in the table is
not guessed at from a similar name: its tokens are counted, its dollars are not, and the log
says so once.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from llmcache.errors import ConfigError

__all__ = ["DEFAULT_PRICES", "PRICES_AS_OF", "Price", "PriceTable"]

log = logging.getLogger("llmcache")

PRICES_AS_OF = "2026-11-22"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached: int = 0, written: int = 0
    ) -> float:
        """Dollars for a call with these token counts.

        :param prompt_tokens: every prompt token, those the provider read from or wrote to
            its prompt cache included.
        :param cached: prompt tokens read from the provider's prompt cache (at
            ``cached_input``, or ``input`` without one).
        :param written: prompt tokens written to it (at ``cache_write``, or ``input``).
        """
        cached = min(cached, prompt_tokens)
        written = min(written, prompt_tokens - cached)
        plain = prompt_tokens - cached - written
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        prompt = plain * self.input + cached * cached_price + written * write_price
        return (prompt + completion_tokens * self.output) / 1e6

    def cache_discount(self, cached_tokens: int) -> float:
        """Dollars the provider's prompt cache saved on ``cached_tokens`` prompt tokens."""
        if self.cached_input is None:
            return 0.0
        return cached_tokens * (self.input - self.cached_input) / 1e6


DEFAULT_PRICES: Mapping[str, Price] = {
    # -- OpenAI (developers.openai.com/api/docs/pricing and the model pages) --------------
    "gpt-6.2-sol": Price(2.00, 10.00, 0.10),
    "gpt-6.1-sol": Price(2.00, 10.00, 0.10),
    "gpt-6-sol": Price(2.00, 10.00, 0.20),
    "gpt-6-luna": Price(0.10, 0.50, 0.01),
    "gpt-6-astra": Price(10.00, 50.00),
    "gpt-5.6": Price(4.00, 20.00, 0.40),  # the alias of gpt-5.6-sol
    "gpt-5.6-sol": Price(4.00, 20.00, 0.40),
    "gpt-5.6-luna": Price(0.20, 1.20, 0.02),
    "gpt-5.5": Price(5.00, 30.00, 0.50),
    "gpt-5.5-pro": Price(30.00, 180.00),
    "gpt-5.4": Price(2.50, 15.00, 0.25),
    "gpt-5.4-mini": Price(0.75, 4.50, 0.075),
    "gpt-5.4-nano": Price(0.20, 1.25, 0.02),
    "gpt-5.4-pro": Price(30.00, 180.00),
    "gpt-5.2": Price(1.75, 14.00, 0.175),
    "gpt-5.2-pro": Price(21.00, 168.00),
    "gpt-5.1": Price(1.25, 10.00, 0.125),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-5-pro": Price(15.00, 120.00),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-2024-05-13": Price(5.00, 15.00),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-pro": Price(20.00, 80.00),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o1": Price(15.00, 60.00, 7.50),
    "o1-mini": Price(1.10, 4.40, 0.55),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "gpt-3.5-turbo-instruct": Price(1.50, 2.00),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "text-embedding-ada-002": Price(0.10, 0.0),
    # -- Anthropic (platform.claude.com/docs/en/about-claude/pricing) ---------------------
    # cached_input is the cache-hit price; cache writes (5-minute) cost 1.25x input, below
    "claude-fable-5-1": Price(10.00, 50.00, 0.25),
    "claude-fable-5": Price(10.00, 50.00, 1.00),
    "claude-opus-5-5": Price(4.00, 20.00, 0.20),
    "claude-opus-5": Price(5.00, 25.00, 0.50),
    "claude-opus-4-8": Price(5.00, 25.00, 0.50),
    "claude-opus-4-7": Price(5.00, 25.00, 0.50),
    "claude-opus-4-6": Price(5.00, 25.00, 0.50),
    "claude-opus-4-5": Price(5.00, 25.00, 0.50),
    "claude-opus-4-1": Price(15.00, 75.00, 1.50),
    "claude-opus-4": Price(15.00, 75.00, 1.50),
    "claude-opus-4-0": Price(15.00, 75.00, 1.50),
    "claude-sonnet-5-5": Price(2.00, 10.00, 0.10),
    "claude-sonnet-5": Price(2.00, 10.00, 0.20),
    "claude-sonnet-4-6": Price(3.00, 15.00, 0.30),
    "claude-sonnet-4-5": Price(3.00, 15.00, 0.30),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    "claude-sonnet-4-0": Price(3.00, 15.00, 0.30),
    "claude-3-7-sonnet": Price(3.00, 15.00, 0.30),
    "claude-3-5-sonnet": Price(3.00, 15.00, 0.30),
    "claude-haiku-5-5": Price(0.10, 0.50, 0.01),  # prompts up to 100k tokens
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
    "claude-3-haiku": Price(0.25, 1.25, 0.03),
    "claude-3-opus": Price(15.00, 75.00, 1.50),
}
DEFAULT_PRICES = {
    model: Price(p.input, p.output, p.cached_input, round(p.input * 1.25, 6))
    if model.startswith("claude-")
    else p
    for model, p in DEFAULT_PRICES.items()
}

# a dated snapshot or moving alias of a listed model: -2024-07-18, -20250929, -latest
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)\Z")

_FIELDS = ("input", "output", "cached_input", "cache_write")


def _price(model: str, entry: object) -> Price:
    if isinstance(entry, Price):
        return entry
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"pricing[{model!r}] must be a mapping with keys {', '.join(_FIELDS)}, not {entry!r}"
        )
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"pricing[{model!r}] has unknown field {unknown[0]!r}; known: {', '.join(_FIELDS)}"
        )
    values: dict[str, float | None] = {}
    for field in _FIELDS:
        value = entry.get(field)
        if value is None and field in ("cached_input", "cache_write"):
            values[field] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(
                f"pricing[{model!r}][{field!r}] must be a number of USD per million tokens "
                f">= 0, not {value!r}"
            )
        if not math.isfinite(value):
            raise ConfigError(f"pricing[{model!r}][{field!r}] must be finite, not {value!r}")
        values[field] = float(value)
    cached, full = values["cached_input"], values["input"]
    if cached is not None and full is not None and cached > full:
        raise ConfigError(
            f"pricing[{model!r}]['cached_input'] ({cached}) must not exceed "
            f"pricing[{model!r}]['input'] ({full})"
        )
    return Price(
        values["input"] or 0.0,
        values["output"] or 0.0,
        values["cached_input"],
        values["cache_write"],
    )


_RESOLVED_MAX = 4096


class PriceTable:
    """The built-in prices with a client's overrides on top.

    :param overrides: ``{"model": {"input": 0.15, "output": 0.60, "cached_input": 0.075}}``.
    :raises ConfigError: an entry is malformed; the message names the model and field.
    """

    def __init__(self, overrides: Mapping[str, object] | None = None) -> None:
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ConfigError(
                "pricing must be a mapping of model name to "
                f"{{'input': ..., 'output': ..., 'cached_input': ...}}, not {overrides!r}"
            )
        self._prices = dict(DEFAULT_PRICES)
        for model, entry in (overrides or {}).items():
            if not isinstance(model, str) or not model:
                raise ConfigError(f"pricing keys must be model names, not {model!r}")
            self._prices[model] = _price(model, entry)
        self._warned: set[str] = set()
        self._resolved: dict[str, Price | None] = {}  # names not in the table, looked up once
        self._lock = threading.Lock()

    def get(self, model: str | None) -> Price | None:
        """Return the price of ``model``, or ``None`` (logged once per model) if unknown."""
        if not model:
            return None
        price = self._prices.get(model)
        if price is not None:
            return price
        if model in self._resolved:  # a snapshot name seen before, or a model without a price
            return self._resolved[model]
        price = self._prices.get(_SNAPSHOT.sub("", model))
        if len(self._resolved) < _RESOLVED_MAX:
            self._resolved[model] = price
        if price is not None:
            return price
        with self._lock:
            if model not in self._warned:
                self._warned.add(model)
                log.warning(
                    "llmcache has no price for model %r: tokens are counted, dollars are not "
                    "(pass pricing={%r: {'input': ..., 'output': ...}})",
                    model,
                    model,
                )
        return None

    def cost(
        self,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cached: int = 0,
        written: int = 0,
    ) -> float:
        """Dollars for a call (see :meth:`Price.cost`), or 0 for a model without a price."""
        price = self.get(model)
        return price.cost(prompt_tokens, completion_tokens, cached, written) if price else 0.0
