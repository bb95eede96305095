"""``GET /metrics``: the library's Prometheus metrics, and the proxy's own, in one registry.

The cache metrics are those of
:class:`llmcache.integrations.prometheus.PrometheusObserver`, the same names
an application using the library exports (``llmcache_hits_total``, ``llmcache_misses_total``,
``llmcache_stores_total``, ``llmcache_errors_total``, ``llmcache_tokens_saved_total``,
``llmcache_cost_saved_usd_total``, ``llmcache_latency_seconds``). The proxy adds
``llmcache_proxy_requests_total{path, status}``: what it answered, its own errors included.
"""

from __future__ import annotations

from typing import Any

from llmcache.errors import MissingExtraError
from llmcache.integrations.prometheus import PrometheusObserver
from llmcache.serve.activity import Served

__all__ = ["ServeMetrics"]


class ServeMetrics:
    """A private Prometheus registry with the cache's observer and the proxy's counter.

    :raises MissingExtraError: prometheus-client is not installed.
    """

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise MissingExtraError("llmcache serve", "serve", "prometheus-client") from exc
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        self.observer = PrometheusObserver(registry=self.registry)
        self.requests = prom.Counter(
            "llmcache_proxy_requests",
            "API calls the proxy answered, by path and status.",
            ("path", "status"),
            registry=self.registry,
        )

    def count(self, served: Served) -> None:
        """Count one answered API call."""
        self.requests.labels(served.path, str(served.status)).inc()

    def render(self) -> tuple[bytes, str]:
        """Return the exposition text and its content type."""
        prom: Any = self._prom
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST
