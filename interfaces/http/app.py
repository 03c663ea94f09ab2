"""The Litestar application factory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from litestar import Litestar, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.response import Redirect

from interfaces.composition import Services
from interfaces.console.pages import template_config
from interfaces.console.router import console_router
from interfaces.dispatching import run_dispatcher
from interfaces.http.accounts import AccountController
from interfaces.http.api_reference import api_reference_plugin, assets_router
from interfaces.http.audit import AuditController
from interfaces.http.auth import (
    provide_principal,
    provide_readable_account,
    provide_writable_account,
)
from interfaces.http.backfill import BackfillController
from interfaces.http.conversations import ConversationController
from interfaces.http.crm import CrmController
from interfaces.http.crm_webhooks_openapi import crm_webhooks
from interfaces.http.entry_points import EntryPointController
from interfaces.http.health import healthz, readyz
from interfaces.http.media import MediaController
from interfaces.http.metrics import metrics_route
from interfaces.http.openapi import document_problems
from interfaces.http.participants import ParticipantController
from interfaces.http.problems import exception_handlers
from interfaces.http.request_checks import request_checks
from interfaces.http.request_context import RequestContext
from interfaces.http.rules import RuleController
from interfaces.http.webhook_metrics import WebhookMetrics
from interfaces.http.webhooks import WebhookController, WebhookIntake
from projections.health import ProjectionWatch

CATCH_UP_SHARE = 0.25
"""Runners in the web process take at most a quarter of the time while they follow a
backlog (after a restart, say): the requests come first. Measured with P4's fill (100,000
events) right after a restart: webhooks answered in 118-260 ms (medians) while the
runners caught up at full speed, 20-23 ms at a quarter."""


def create_app(
    services: Services, *, run_projections: bool = True, run_dispatcher: bool = True
) -> Litestar:
    """The HTTP app over `services`; it starts and stops the ledger writer with itself,
    and the projection runners and the dispatcher too unless told not to (when separate
    `dmledger project` and `dmledger dispatch` processes run them)."""

    def provide(value: object) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    def start_projections() -> None:
        services.read_models.start(catch_up_share=CATCH_UP_SHARE)

    vault = services.ledger.vault
    if vault is not None and not run_projections:
        vault.keeps_recent = False  # no runner here to open (and let go) what it seals
    starts: list[Callable[[], Any]] = [start_projections] if run_projections else []
    stops: list[Callable[[], Any]] = [services.read_models.stop] if run_projections else []
    if run_dispatcher:
        dispatching = InProcessDispatcher(services)
        starts.append(dispatching.start)
        stops.insert(0, dispatching.stop)
    app = Litestar(
        route_handlers=[
            WebhookController,
            AccountController,
            EntryPointController,
            ConversationController,
            RuleController,
            CrmController,
            AuditController,
            ParticipantController,
            MediaController,
            BackfillController,
            healthz,
            readyz,
            metrics_route(services),
            docs,
            assets_router(),  # Scalar's script for /docs, served from the package
            console_router(services),  # the browser console, /console
        ],
        template_config=template_config(),
        # Audit keys never write, whatever endpoint they try (read_only.py), and a NUL or
        # a 65-bit integer anywhere in a JSON body is a 422 (storable_input.py): one hook
        # for every route, not a guard (request_checks.py says why).
        before_request=request_checks(services.api_keys),
        dependencies={
            "ledger": provide(services.ledger),
            "writer": provide(services.writer),
            "ingest": provide(services.ingest),
            "intake": provide(
                WebhookIntake(services.ingest, services.writer, services.app_secrets)
            ),
            "accounts": provide(services.accounts),
            "api_keys": provide(services.api_keys),
            "conversations": provide(services.conversations),
            "read_models": provide(services.read_models),
            "watch": provide(
                ProjectionWatch(
                    services.read_models, stall_after=services.settings.ready_stall_seconds
                )
            ),
            "rules": provide(services.rules),
            "crm_endpoints": provide(services.crm_endpoints),
            "entry_points": provide(services.entry_points),
            "delivery_queue": provide(services.delivery_queue),
            "redeliveries": provide(services.redeliveries),
            "backfills": provide(services.backfills),
            "clock": provide(services.clock),
            "principal": Provide(provide_principal),
            # Resolved from the path's {account_id}, for the routes that have one.
            "account": Provide(provide_readable_account),
            "writable_account": Provide(provide_writable_account),
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
            render_plugins=[api_reference_plugin(path="/docs")],
            # Every CRM notification and its payload (interfaces/http/crm_webhooks_openapi.py).
            webhooks=crm_webhooks(),
        ),
        # Our records go to the process's one handler (interfaces/logging_setup.py).
        logging_config=None,
    )
    document_problems(app)
    # Outside Litestar's own handler, so that requests no route matches get an id too.
    app.asgi_handler = RequestContext(WebhookMetrics(app.asgi_handler, services.metrics))
    return app


@get("/docs", include_in_schema=False)
async def docs() -> Redirect:
    """The API reference (Scalar) lives under /schema."""
    return Redirect("/schema/docs")


class InProcessDispatcher:
    """The dispatcher as a task of the web process (`dmledger serve`)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.ensure_future(run_dispatcher(self._services, self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
