"""Per-call ``cache_*`` options and HTTP-style ``cache_control`` directives, parsed strictly."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, get_args

from llmcache._rules.request import CacheOptions, Strategy

__all__ = [
    "KNOWN_OPTIONS",
    "Directives",
    "parse_cache_control",
    "parse_options",
    "split_options",
]

KNOWN_OPTIONS = (
    "cache_control",
    "cache_ttl",
    "cache_key",
    "cache_prompt",
    "cache_strategy",
    "cache_tier",
    "cache_semantic",
)
_VALUED = {"max-age", "s-maxage", "stale-if-error", "stale-while-revalidate"}
_FLAGS = {"no-cache", "no-store", "only-if-cached"}
_DIRECTIVE = re.compile(r"\s*([A-Za-z-]+)\s*(?:=\s*(\S*?))?\s*")
_DELTA = re.compile(r"[0-9]+")
_STRATEGIES: tuple[str, ...] = get_args(Strategy)


@dataclass(frozen=True, slots=True)
class Directives:
    """The parsed ``cache_control`` of one call; ``None`` where a directive is absent."""

    max_age: int | None = None
    s_maxage: int | None = None
    no_cache: bool = False
    no_store: bool = False
    only_if_cached: bool = False
    stale_if_error: int | None = None
    stale_while_revalidate: int | None = None

    @property
    def stale_window(self) -> int:
        """The longest time past expiry for which a stale entry may still be used."""
        return max(self.stale_if_error or 0, self.stale_while_revalidate or 0)


NO_DIRECTIVES = Directives()
DEFAULT_OPTIONS = CacheOptions()


@lru_cache(maxsize=1024)
def parse_cache_control(value: str) -> Directives:
    """Parse a ``cache_control`` string such as ``"max-age=3600, stale-if-error=600"``.

    :raises ValueError: a directive is unknown, malformed, repeated or has a bad value;
        the message names it and lists the accepted ones.
    """
    if not value.strip():
        return NO_DIRECTIVES
    seen: dict[str, int | bool] = {}
    for raw in value.split(","):
        match = _DIRECTIVE.fullmatch(raw)
        name = match.group(1).lower() if match else ""
        argument = match.group(2) if match else None
        if name not in _VALUED and name not in _FLAGS:
            raise ValueError(
                f"unknown cache_control directive {raw.strip()!r}; known: "
                f"{', '.join(sorted(_VALUED | _FLAGS))}"
            )
        if name in seen:
            raise ValueError(f"cache_control directive {name!r} is given twice")
        if name in _FLAGS:
            if argument is not None:
                raise ValueError(
                    f"cache_control directive {name!r} takes no value: {raw.strip()!r}"
                )
            seen[name] = True
        else:
            if argument is None or not _DELTA.fullmatch(argument):
                raise ValueError(
                    f"cache_control directive {name!r} needs a whole number of seconds, "
                    f"as in '{name}=60': {raw.strip()!r}"
                )
            seen[name] = int(argument)
    return Directives(**{k.replace("-", "_"): v for k, v in seen.items()})  # type: ignore[arg-type]


def _ttl(value: Any) -> float:
    if value == "forever":
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"cache_ttl must be a number of seconds >= 0 or 'forever', not {value!r}")
    return float(value)


def split_options(
    kwargs: Mapping[str, Any], *, sdk_cache_control: bool = False
) -> tuple[dict[str, Any], CacheOptions, Directives]:
    """Split a call's keywords into the upstream arguments and llmcache's options.

    :param sdk_cache_control: the SDK has a ``cache_control`` parameter of its own
        (Anthropic): a dict goes upstream untouched, a string is llmcache's.
    :raises TypeError: an unknown ``cache_*`` keyword, naming the known ones.
    :raises ValueError: a bad option value, naming it and the accepted values.
    """
    params = dict(kwargs)
    found = {}
    for name in kwargs:
        if not name.startswith("cache_"):
            continue
        if name == "cache_control" and sdk_cache_control and not isinstance(kwargs[name], str):
            continue
        if name not in KNOWN_OPTIONS:
            raise TypeError(f"unknown llmcache option {name!r}; known: {', '.join(KNOWN_OPTIONS)}")
        found[name] = params.pop(name)
    return (params, *parse_options(found))


def parse_options(found: Mapping[str, Any]) -> tuple[CacheOptions, Directives]:
    """Parse known ``cache_*`` options (by their keyword names) into options and directives.

    :raises ValueError: a bad option value, naming it and the accepted values.
    """
    if not found:
        return DEFAULT_OPTIONS, NO_DIRECTIVES
    control = found.get("cache_control")
    if control is not None and not isinstance(control, str):
        raise ValueError(f"cache_control must be a string of directives, not {control!r}")
    directives = parse_cache_control(control) if control is not None else NO_DIRECTIVES
    ttl = _ttl(found["cache_ttl"]) if found.get("cache_ttl") is not None else None
    key = found.get("cache_key")
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError(f"cache_key must be a non-empty string, not {key!r}")
    prompt = found.get("cache_prompt", False)
    if not isinstance(prompt, bool):
        raise ValueError(f"cache_prompt must be True or False, not {prompt!r}")
    strategy = found.get("cache_strategy", "tiered")
    if strategy not in _STRATEGIES:
        raise ValueError(f"unknown cache_strategy {strategy!r}; known: {', '.join(_STRATEGIES)}")
    tier = found.get("cache_tier")
    if tier is not None and (isinstance(tier, bool) or not isinstance(tier, int) or tier < 1):
        raise ValueError(f"cache_tier must be a whole number >= 1, not {tier!r}")
    semantic = found.get("cache_semantic", True)
    if not isinstance(semantic, bool):
        raise ValueError(f"cache_semantic must be True or False, not {semantic!r}")
    return CacheOptions(control, ttl, key, prompt, strategy, tier, semantic), directives
