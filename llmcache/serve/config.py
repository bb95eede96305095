"""What one ``llmcache serve`` process is configured with, checked once, before it listens.

A :class:`ServeConfig` travels to uvicorn's worker processes as JSON in an environment
variable (``--workers N`` starts the app by import string), so it holds plain values only.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from llmcache.errors import ConfigError

__all__ = ["CONFIG_ENV", "ServeConfig", "cache_dir", "default_tier"]

CONFIG_ENV = "LLMCACHE_SERVE_CONFIG"
SECRET_ENV = "LLMCACHE_SERVE_SECRET"
DEFAULT_MAX_BODY = 8 * 1024 * 1024  # larger than any chat request with a few images inlined


def cache_dir() -> Path:
    """Return the user's llmcache cache directory (``$XDG_CACHE_HOME/llmcache``), made."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmcache"
    base.mkdir(parents=True, exist_ok=True)
    return base


def default_tier() -> str:
    """Return the default tier: a SQLite file in the user's cache directory."""
    return f"sqlite:///{cache_dir() / 'serve.db'}"


def _base_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// base URL, not {url!r}")
    return url.rstrip("/")


def isolation_secret() -> str:
    """Return the key that tenants' namespaces are derived with.

    ``$LLMCACHE_SERVE_SECRET`` when set (give every proxy sharing a tier the same one);
    else a random key kept in the user's cache directory, made on first use, so the
    workers and restarts of one machine agree.
    """
    given = os.environ.get(SECRET_ENV)
    if given:
        return given
    path = cache_dir() / "serve-secret"
    try:
        # O_EXCL: of several workers starting at once, one writes the key, the others read it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return path.read_text().strip()


@dataclass(frozen=True)
class ServeConfig:
    """The settings of a caching proxy (the ``llmcache serve`` flags).

    :param tiers: tier URLs, L1 first (default: :func:`default_tier`).
    :param upstream_openai: the OpenAI base URL, as an OpenAI SDK takes it.
    :param upstream_anthropic: the Anthropic base URL, as Anthropic's SDK takes it.
    :param namespace: the namespace of the entries (the prefix of tenants' namespaces
        with ``isolate_by_key``).
    :param isolate_by_key: give each caller's API key a namespace of its own.
    :param admin_token: the bearer token of the admin endpoints (``None``: they are off).
    :param max_body_bytes: the largest request body accepted.
    :param default_ttl: seconds an entry lives when the call says nothing.
    :param upstream_timeout: seconds an upstream answer may take.
    :param recent: how many of the latest requests the dashboard lists.
    :param keep_requests: store each answer's canonical request in its entry (for
        ``llmcache explain``).
    :raises ConfigError: a value is malformed (the message names it).
    """

    tiers: tuple[str, ...] = ()
    upstream_openai: str = "https://api.openai.com/v1"
    upstream_anthropic: str = "https://api.anthropic.com"
    namespace: str = "default"
    isolate_by_key: bool = False
    admin_token: str | None = field(default=None, repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY
    default_ttl: float | None = 86400
    upstream_timeout: float = 600.0
    recent: int = 200
    keep_requests: bool = False
    secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "upstream_openai", _base_url("--upstream-openai", self.upstream_openai)
        )
        object.__setattr__(
            self, "upstream_anthropic", _base_url("--upstream-anthropic", self.upstream_anthropic)
        )
        if not self.tiers:
            object.__setattr__(self, "tiers", (default_tier(),))
        object.__setattr__(self, "tiers", tuple(self.tiers))
        if self.max_body_bytes < 1:
            raise ConfigError(f"--max-body-bytes must be >= 1, not {self.max_body_bytes!r}")
        if not self.upstream_timeout > 0:
            raise ConfigError(f"--upstream-timeout must be > 0, not {self.upstream_timeout!r}")
        if self.admin_token is not None and len(self.admin_token) < 8:
            raise ConfigError("--admin-token must be at least 8 characters long")
        if self.isolate_by_key and not self.secret:
            object.__setattr__(self, "secret", isolation_secret())

    def to_json(self) -> str:
        """Return the settings as JSON (for the worker processes)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """Return the settings :meth:`to_json` wrote."""
        data = json.loads(text)
        data["tiers"] = tuple(data["tiers"])
        return cls(**data)

    @classmethod
    def from_env(cls) -> ServeConfig:
        """Return the settings the parent process left in ``$LLMCACHE_SERVE_CONFIG``.

        :raises ConfigError: the variable is not set.
        """
        text = os.environ.get(CONFIG_ENV)
        if not text:
            raise ConfigError(f"${CONFIG_ENV} is not set; start the server with `llmcache serve`")
        return cls.from_json(text)
