"""Export cache events as Prometheus metrics.

:class:`PrometheusObserver` is an ordinary llmcache plugin: it implements the event hooks
and feeds prometheus-client counters and histograms. Enable it for one client::

    from prometheus_client import CollectorRegistry
    from llmcache.integrations.prometheus import PrometheusObserver

    registry = CollectorRegistry()
    client = CachedClient(OpenAI(), plugins=[PrometheusObserver(registry=registry)])

or for every client of the process (metrics in prometheus-client's default registry)::

    llmcache.register_plugin(PrometheusObserver())

Metrics (every one labelled ``namespace`` and ``endpoint``):

- ``llmcache_hits_total{tier}``: calls served from the cache; ``tier`` is the tier label
  (``L1:memory``), or ``none`` for a call served by an identical call in flight.
- ``llmcache_misses_total``: calls that went upstream after looking in the cache.
- ``llmcache_stores_total{tier}``: entries written, per tier.
- ``llmcache_errors_total{tier}``: tier failures and corrupt entries.
- ``llmcache_tokens_saved_total`` and ``llmcache_cost_saved_usd_total``: what hits saved.
- ``llmcache_latency_seconds{tier, event}``: a histogram of the time the cache work took,
  ``event`` being ``hit``, ``miss`` (the whole call, upstream included) or ``store``.

prometheus-client is an optional dependency: ``pip install 'llmcache[prometheus]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmcache._observe.events import CacheEvent
from llmcache.errors import ConfigError, MissingExtraError
from llmcache.hookspecs import hookimpl

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["DEFAULT_BUCKETS", "PrometheusObserver"]

# from a memory hit (tens of microseconds) to a slow upstream call (tens of seconds)
DEFAULT_BUCKETS = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_LABELS = ("namespace", "endpoint")
NO_TIER = "none"


def _tier(event: CacheEvent) -> str:
    return event.tier if event.tier is not None else NO_TIER


class PrometheusObserver:
    """Feed prometheus-client metrics from llmcache's ``llmcache_on_*`` event hooks.

    :param registry: the prometheus-client registry to register the metrics in (default:
        prometheus-client's process-wide ``REGISTRY``).
    :param prefix: the metric name prefix.
    :param buckets: latency histogram buckets, in seconds.
    :raises MissingExtraError: prometheus-client is not installed.
    :raises ConfigError: metrics of that prefix already exist in ``registry`` (use one
        observer per registry, or another prefix).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        prefix: str = "llmcache",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise MissingExtraError(
                "PrometheusObserver", "prometheus", "prometheus-client"
            ) from exc
        where = prom.REGISTRY if registry is None else registry

        def counter(name: str, doc: str, labels: Sequence[str] = _LABELS) -> Any:
            return prom.Counter(f"{prefix}_{name}", doc, labels, registry=where)

        try:
            self.hits = counter("hits", "Calls served from the cache.", (*_LABELS, "tier"))
            self.misses = counter("misses", "Calls that looked in the cache and went upstream.")
            self.stores = counter("stores", "Entries written to a tier.", (*_LABELS, "tier"))
            self.errors = counter(
                "errors", "Tier failures and corrupt entries.", (*_LABELS, "tier")
            )
            self.tokens_saved = counter("tokens_saved", "Tokens the cache hits saved.")
            self.cost_saved = counter("cost_saved_usd", "Dollars the cache hits saved.")
            self.latency = prom.Histogram(
                f"{prefix}_latency_seconds",
                "Seconds the cache work took, by tier and event (hit, miss, store).",
                (*_LABELS, "tier", "event"),
                buckets=tuple(buckets),
                registry=where,
            )
        except ValueError as exc:  # prometheus-client: "Duplicated timeseries in CollectorRegistry"
            raise ConfigError(
                f"cannot register {prefix}_* metrics: {exc}; use one PrometheusObserver per "
                "registry, or pass registry=CollectorRegistry() or another prefix="
            ) from exc

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    @hookimpl
    def llmcache_on_hit(self, event: CacheEvent) -> None:
        """Count a hit, what it saved, and the lookup time."""
        where = (event.request.namespace, event.request.endpoint)
        tier = _tier(event)
        self.hits.labels(*where, tier).inc()
        if event.tokens_saved:
            self.tokens_saved.labels(*where).inc(event.tokens_saved)
        if event.cost_saved_usd:
            self.cost_saved.labels(*where).inc(event.cost_saved_usd)
        self.latency.labels(*where, tier, "hit").observe(event.elapsed)

    @hookimpl
    def llmcache_on_miss(self, event: CacheEvent) -> None:
        """Count a miss and the whole call's time."""
        where = (event.request.namespace, event.request.endpoint)
        self.misses.labels(*where).inc()
        self.latency.labels(*where, _tier(event), "miss").observe(event.elapsed)

    @hookimpl
    def llmcache_on_store(self, event: CacheEvent) -> None:
        """Count an entry written to a tier and the write time."""
        where = (event.request.namespace, event.request.endpoint)
        tier = _tier(event)
        self.stores.labels(*where, tier).inc()
        self.latency.labels(*where, tier, "store").observe(event.elapsed)

    @hookimpl
    def llmcache_on_error(self, event: CacheEvent) -> None:
        """Count a tier failure or corrupt entry."""
        self.errors.labels(event.request.namespace, event.request.endpoint, _tier(event)).inc()
