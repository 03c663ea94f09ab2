"""Meta's webhook endpoints: the subscription handshake and the event deliveries."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import QueryParameter
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_200_OK, HTTP_403_FORBIDDEN

from application.accounts import Accounts
from application.errors import InvalidSignature, MalformedWebhook
from application.ingest import WebhookIngest
from application.ledger_writer import LedgerWriter
from application.webhook_signatures import ServedAppSecrets, refuse
from interfaces.http.openapi import problems
from interfaces.http.problems import problem
from interfaces.refusal_log import RefusalLog

log = logging.getLogger(__name__)

EVENT_RECEIVED = ASGIResponse(body=b"EVENT_RECEIVED", media_type=MediaType.TEXT)
"""Meta's 200, built once: for a `str`, Litestar builds a `Response` and then an
`ASGIResponse` for every request (~13% of the event loop's CPU per webhook). It holds
no state of a request (no cookies, no background task), so every answer can send it."""


@dataclass(frozen=True)
class WebhookIntake:
    """What receiving a webhook needs, as one dependency: Litestar resolves several
    dependencies of a handler in a task group, which costs the hot path dearly."""

    ingest: WebhookIngest
    writer: LedgerWriter
    app_secrets: ServedAppSecrets
    refusals: RefusalLog = field(default_factory=lambda: RefusalLog(log, "webhook bodies"))

    async def authenticate(self, body: bytes, signature: str | None) -> None:
        """Refuse a body signed with none of the served app secrets, before reading it."""
        if self.app_secrets.signed(body, signature):
            return
        if self.app_secrets.may_reload():
            await asyncio.to_thread(self.app_secrets.reload)
            if self.app_secrets.signed(body, signature):
                return
        raise refuse()


class WebhookController(Controller):
    """`/webhooks/instagram`: where Meta delivers Instagram messaging events."""

    path = "/webhooks/instagram"
    tags = ["webhooks"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get(
        media_type=MediaType.TEXT,
        summary="Confirm the webhook subscription",
        responses=problems(
            403,
            when_403="hub.mode is not `subscribe`, or hub.verify_token no active account's.",
        ),
    )
    async def confirm_subscription(
        self,
        accounts: NamedDependency[Accounts],
        mode: Annotated[str | None, QueryParameter(name="hub.mode")] = None,
        verify_token: Annotated[str | None, QueryParameter(name="hub.verify_token")] = None,
        challenge: Annotated[str | None, QueryParameter(name="hub.challenge")] = None,
    ) -> Response[Any]:
        """Answer Meta's `hub.challenge` when `hub.verify_token` is an active account's token."""
        if mode == "subscribe" and verify_token and challenge is not None:
            confirmed = await asyncio.to_thread(accounts.confirm_subscription, verify_token)
            if confirmed:
                return Response(challenge, media_type=MediaType.TEXT, status_code=HTTP_200_OK)
        return problem(
            HTTP_403_FORBIDDEN,
            "Forbidden",
            "hub.mode must be 'subscribe' and hub.verify_token an active account's verify token",
            "subscription-refused",
        )

    @post(
        media_type=MediaType.TEXT,
        status_code=HTTP_200_OK,
        summary="Receive Instagram messaging events",
        # What `str` documents by itself; the handler answers a prebuilt `EVENT_RECEIVED`.
        responses={
            HTTP_200_OK: ResponseSpec(
                data_container=str,
                media_type=MediaType.TEXT,
                description="Request fulfilled, document follows",
                generate_examples=False,
            ),
            **problems(
                400,
                401,
                413,
                503,
                when_400="The body is not an Instagram webhook.",
                when_401="X-Hub-Signature-256 is not the body's HMAC under a served app's secret.",
                when_503="Nothing was stored: Meta delivers it again.",
            ),
        },
    )
    async def receive(
        self, request: Request[Any, Any, Any], intake: NamedDependency[WebhookIntake]
    ) -> ASGIResponse:
        """Store every messaging item of a signed body, then answer `EVENT_RECEIVED`.

        The answer comes only after the events are committed: 401 for a body signed with
        no app secret of a served account (whatever accounts it names), 400 for a body
        that is not an Instagram webhook, 503 when nothing could be stored (Meta delivers
        it again), 413 for a body over the size limit.
        """
        body = await request.body()
        signature = request.headers.get("x-hub-signature-256")
        try:
            await intake.authenticate(body, signature)
            await intake.writer.run(intake.ingest.command(body, signature))
        except (InvalidSignature, MalformedWebhook) as refusal:
            intake.refusals.note(type(refusal).__name__)
            raise
        return EVENT_RECEIVED
