"""`GET /metrics`: this process's metrics in Prometheus' text format."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from infrastructure.prometheus_metrics import exposition
from interfaces.composition import Services
from interfaces.metrics_access import allow_scraper


def metrics_route(services: Services) -> HTTPRouteHandler:
    """The `/metrics` route of `services`' process."""

    @get("/metrics", tags=["health"], media_type="text/plain")
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Counters, histograms and gauges for Prometheus (its text format, or OpenMetrics
        when asked). Readable with an admin API key, or with `DMLEDGER_METRICS_TOKEN`, as
        `Authorization: Bearer`; 401 without either, 403 with another key."""
        await asyncio.to_thread(
            allow_scraper,
            request.headers.get("authorization"),
            token=services.settings.metrics_token,
            api_keys=services.api_keys,
        )
        # The gauges read the database (at most once a second): not on the event loop.
        body, content_type = await asyncio.to_thread(
            exposition, services.metrics.registry, request.headers.get("accept")
        )
        return Response(body, media_type=content_type)

    return metrics
