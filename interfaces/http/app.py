"""The Litestar application factory."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.response import Redirect

from interfaces.composition import Services
from interfaces.http.audit import AuditController
from interfaces.http.auth import provide_principal
from interfaces.http.conversations import ConversationController
from interfaces.http.health import healthz, readyz
from interfaces.http.problems import exception_handlers
from interfaces.http.read_only import auditors_read_only
from interfaces.http.webhooks import WebhookController


def create_app(services: Services, *, run_projections: bool = True) -> Litestar:
    """The HTTP app over `services`; it starts and stops the ledger writer with itself,
    and the projection runners too unless `run_projections` is False (when separate
    `dmledger project` processes run them)."""

    def provide(value: object) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    starts = [services.read_models.start] if run_projections else []
    stops = [services.read_models.stop] if run_projections else []
    app = Litestar(
        route_handlers=[WebhookController, ConversationController, healthz, readyz, docs],
        # Audit keys never write, whatever endpoint they try (see read_only.py).
        guards=[auditors_read_only(services.api_keys)],
        dependencies={
            "ledger": provide(services.ledger),
            "writer": provide(services.writer),
            "ingest": provide(services.ingest),
            "accounts": provide(services.accounts),
            "api_keys": provide(services.api_keys),
            "conversations": provide(services.conversations),
            "read_models": provide(services.read_models),
            "principal": Provide(provide_principal),
        },
        exception_handlers=exception_handlers,
        # Webhook bodies are the largest we take; nothing else comes close.
        request_max_body_size=services.settings.webhook_max_body_bytes,
        on_startup=[services.writer.start, *starts],
        on_shutdown=[*stops, services.writer.stop],
        openapi_config=OpenAPIConfig(
            title="dmledger",
            version="0.1.0",
            description="Event-sourced conversation service for Instagram Direct Messages.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(path="/docs")],
        ),
    )
    app.register(AuditController)
    return app


@get("/docs", include_in_schema=False)
async def docs() -> Redirect:
    """The API reference (Scalar) lives under /schema."""
    return Redirect("/schema/docs")
