"""The Litestar application factory."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from interfaces.composition import Services
from interfaces.http.health import healthz, readyz
from interfaces.http.problems import exception_handlers
from interfaces.http.webhooks import WebhookController


def create_app(services: Services) -> Litestar:
    """The HTTP app over `services`; it starts and stops the ledger writer with itself."""

    def provide(value: object) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    return Litestar(
        route_handlers=[WebhookController, healthz, readyz],
        dependencies={
            "ledger": provide(services.ledger),
            "writer": provide(services.writer),
            "ingest": provide(services.ingest),
            "accounts": provide(services.accounts),
        },
        exception_handlers=exception_handlers,
        # Webhook bodies are the largest we take; nothing else comes close.
        request_max_body_size=services.settings.webhook_max_body_bytes,
        on_startup=[services.writer.start],
        on_shutdown=[services.writer.stop],
        openapi_config=OpenAPIConfig(
            title="dmledger",
            version="0.1.0",
            description="Event-sourced conversation service for Instagram Direct Messages.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(path="/docs")],
        ),
    )
