"""``llmcache serve``: a caching proxy for OpenAI- and Anthropic-compatible APIs.

Any language's client points its base URL at the proxy; calls go through the HTTP-level
cache (:class:`llmcache.http.AsyncCacheTransport`) with its semantics and headers. Needs the
``serve`` extra: ``pip install 'llmcache[serve]'``.
"""

from llmcache.serve.app import ServeApp, create_app
from llmcache.serve.config import ServeConfig

__all__ = ["ServeApp", "ServeConfig", "create_app"]
