"""The ``llmcache serve`` ASGI app: the API door (:mod:`.proxy`) and the operations routes.

``/v1/...`` goes straight to the proxy, a thin layer over one
:class:`~llmcache.http.AsyncCacheTransport`; everything else (dashboard, health, metrics,
statistics, the admin clear) is a small Starlette app, which also runs the lifespan that
closes the tiers on shutdown.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import fields
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from llmcache.http.transport import AsyncCacheTransport, load_library
from llmcache.serve.activity import Activity, Served
from llmcache.serve.config import ServeConfig
from llmcache.serve.dashboard import dashboard_html
from llmcache.serve.metrics import ServeMetrics
from llmcache.serve.proxy import Proxy, Receive, Scope, Send
from llmcache.serve.tenants import Tenants
from llmcache.serve.upstream import error_body

__all__ = ["ServeApp", "create_app"]

log = logging.getLogger("llmcache.serve")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _openai_error(status: int, message: str) -> Response:
    return Response(error_body("openai", status, message), status, media_type="application/json")


class ServeApp:
    """The proxy's ASGI app (see the module docstring).

    :ivar config: its settings.
    :ivar transport: the cache transport of the configured namespace.
    :ivar activity: what the dashboard shows.
    :ivar metrics: the Prometheus registry of ``/metrics``.
    """

    def __init__(self, config: ServeConfig, *, upstream: Any = None, library: str | None = None):
        self.config = config
        self.activity = Activity(config.recent)
        self.metrics = ServeMetrics()
        lib = load_library(library)
        self.upstream = (
            upstream
            if upstream is not None
            else lib.AsyncHTTPTransport(
                limits=lib.Limits(max_connections=512, max_keepalive_connections=128)
            )
        )
        self.transport = AsyncCacheTransport(
            self.upstream,
            library=lib.__name__,
            tiers=list(config.tiers),
            namespace=config.namespace,
            default_ttl=config.default_ttl,
            plugins=[self.activity, self.metrics.observer],
            keep_requests=config.keep_requests,
        )
        self.core = self.transport.core
        tenants = None
        if config.isolate_by_key:

            def tenant(namespace: str) -> AsyncCacheTransport:
                core = self.core.with_namespace(namespace)
                return AsyncCacheTransport(self.upstream, library=lib.__name__, core=core)

            tenants = Tenants(config.namespace, config.secret, tenant)
        self.proxy = Proxy(
            lib,
            self.transport,
            tenants,
            openai_base=config.upstream_openai,
            anthropic_base=config.upstream_anthropic,
            max_body_bytes=config.max_body_bytes,
            record=self._served,
            timeout=config.upstream_timeout,
        )
        self.ops = Starlette(
            routes=[
                Route("/", self.dashboard, methods=["GET"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/metrics", self.prometheus, methods=["GET"]),
                Route("/api/stats", self.stats, methods=["GET"]),
                Route("/api/cache", self.clear, methods=["DELETE"]),
            ],
            lifespan=self._lifespan,
        )
        self.ops.add_exception_handler(404, self._not_found)
        self.ops.add_exception_handler(405, self._not_allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route ``/v1/...`` to the proxy and the rest to the operations app."""
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.proxy(scope, receive, send)
        else:
            await self.ops(scope, receive, send)

    def _served(self, served: Served) -> None:
        self.activity.served(served)
        self.metrics.count(served)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        # uvicorn has let the in-flight requests finish (streams included) before this
        await self.transport.aclose()

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return _openai_error(404, f"unknown path {request.url.path!r}; the API is under /v1/")

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return _openai_error(405, f"{request.method} is not allowed on {request.url.path}")

    async def dashboard(self, request: Request) -> Response:
        """``GET /``: the live dashboard."""
        return HTMLResponse(dashboard_html())

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: the process answers."""
        return _json({"status": "ok", "tiers": self.core.labels})

    async def prometheus(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus exposition text."""
        body, kind = self.metrics.render()
        return Response(body, headers={"content-type": kind})

    async def stats(self, request: Request) -> Response:
        """``GET /api/stats``: the cache's counters and the proxy's activity, as JSON."""
        stats = self.core.stats_snapshot()
        counters = {f.name: getattr(stats, f.name) for f in fields(stats)}
        counters["tier_hits"] = dict(stats.tier_hits)
        counters["hit_rate"] = stats.hit_rate
        config = self.config
        return _json(
            {
                "stats": counters,
                "config": {
                    "tiers": self.core.labels,
                    "namespace": config.namespace,
                    "isolate_by_key": config.isolate_by_key,
                    "upstreams": {
                        "openai": config.upstream_openai,
                        "anthropic": config.upstream_anthropic,
                    },
                },
                **self.activity.snapshot(),
            }
        )

    async def clear(self, request: Request) -> Response:
        """``DELETE /api/cache?key=&older_than=&namespace=``: remove entries (admin token)."""
        token = self.config.admin_token
        if token is None:
            return _openai_error(403, "admin endpoints are off: start with --admin-token")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _openai_error(401, "this endpoint needs 'Authorization: Bearer <admin token>'")
        query = request.query_params
        unknown = sorted(set(query) - {"key", "older_than", "namespace"})
        if unknown:
            known = "key, older_than, namespace"
            return _openai_error(400, f"unknown parameter {unknown[0]!r}; known: {known}")
        older_than: float | None = None
        if "older_than" in query:
            try:
                older_than = float(query["older_than"])
            except ValueError:
                message = f"older_than must be a number of seconds, not {query['older_than']!r}"
                return _openai_error(400, message)
        try:
            core = self.core.with_namespace(query.get("namespace", self.config.namespace))
            steps = core.clear_steps(query.get("key") or None, older_than)
        except ValueError as exc:  # ConfigError included: a malformed namespace
            return _openai_error(400, str(exc))
        removed = await core.store.run(steps)
        log.info("cleared %d entries of namespace %s", removed, core.namespace)
        return _json({"removed": removed, "namespace": core.namespace})


def create_app(config: ServeConfig | None = None, **kwargs: Any) -> ServeApp:
    """Return the ASGI app of ``llmcache serve``.

    :param config: its settings (default: those ``llmcache serve`` left in the
        environment for its worker processes).
    :param kwargs: ``upstream`` (the transport to send upstream through) and ``library``
        (``"httpx2"`` or ``"httpx"``).
    :raises ConfigError: a setting is malformed.
    """
    return ServeApp(config if config is not None else ServeConfig.from_env(), **kwargs)
