"""Model prices, for the dollars a cache hit saved.

Prices are USD per million tokens, from the providers' public price lists as of
:data:`PRICES_AS_OF`. ``CachedClient(pricing={...})`` adds models or overrides these.
A model is matched exactly, then by the longest known prefix (``gpt-4o-mini-2024-07-18``
is priced as ``gpt-4o-mini``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["DEFAULT_PRICES", "PRICES_AS_OF", "Price", "PriceTable"]

log = logging.getLogger("llmcache")

PRICES_AS_OF = "2026-11-01"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for a call with these token counts."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6

    def cache_discount(self, cached_tokens: int) -> float:
        """Dollars the provider's prompt cache saved on ``cached_tokens`` prompt tokens."""
        if self.cached_input is None:
            return 0.0
        return cached_tokens * (self.input - self.cached_input) / 1e6


DEFAULT_PRICES: Mapping[str, Price] = {
    # OpenAI
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "gpt-3.5-turbo-instruct": Price(1.50, 2.00),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "text-embedding-ada-002": Price(0.10, 0.0),
    # Anthropic (cached_input: the cache-read price)
    "claude-opus-4": Price(15.00, 75.00, 1.50),
    "claude-opus-4-1": Price(15.00, 75.00, 1.50),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    "claude-sonnet-4-5": Price(3.00, 15.00, 0.30),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10),
    "claude-3-7-sonnet": Price(3.00, 15.00, 0.30),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
    "claude-3-haiku": Price(0.25, 1.25, 0.03),
}

_FIELDS = ("input", "output", "cached_input")


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
        if value is None and field == "cached_input":
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
    return Price(values["input"] or 0.0, values["output"] or 0.0, values["cached_input"])


class PriceTable:
    """The built-in prices with a client's overrides on top.

    :param overrides: ``{"model": {"input": 0.15, "output": 0.60, "cached_input": 0.075}}``.
    :raises ConfigError: an entry is malformed; the message names the model and field.
    """

    def __init__(self, overrides: Mapping[str, object] | None = None) -> None:
        self._prices = dict(DEFAULT_PRICES)
        for model, entry in (overrides or {}).items():
            self._prices[model] = _price(model, entry)
        self._by_length = sorted(self._prices, key=len, reverse=True)
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def get(self, model: str | None) -> Price | None:
        """Return the price of ``model``, or ``None`` (logged once per model) if unknown."""
        if not model:
            return None
        price = self._prices.get(model)
        if price is not None:
            return price
        for known in self._by_length:
            if model.startswith(known):
                return self._prices[known]
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

    def cost(self, model: str | None, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for a call, or 0 for a model without a price."""
        price = self.get(model)
        return price.cost(prompt_tokens, completion_tokens) if price else 0.0
