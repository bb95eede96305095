"""The HTTP-level cache: transports and clients for the SDKs' ``http_client=`` option.

``OpenAI(http_client=llmcache.http_client(...))`` is a genuine ``OpenAI`` client whose calls,
helpers, raw and streaming responses all go through the cache; so does any framework that
takes an ``http_client``.
"""

from llmcache.http.client import AsyncHttpCache, HttpCache, async_http_client, http_client
from llmcache.http.transport import AsyncCacheTransport, CacheTransport

__all__ = [
    "AsyncCacheTransport",
    "AsyncHttpCache",
    "CacheTransport",
    "HttpCache",
    "async_http_client",
    "http_client",
]
