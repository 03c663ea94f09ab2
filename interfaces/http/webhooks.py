"""Meta's webhook endpoints: the subscription handshake and the event deliveries."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_403_FORBIDDEN

from application.accounts import Accounts
from application.ingest import WebhookIngest
from application.ledger_writer import LedgerWriter
from interfaces.http.problems import problem


@dataclass(frozen=True)
class WebhookIntake:
    """What receiving a webhook needs, as one dependency: Litestar resolves several
    dependencies of a handler in a task group, which costs the hot path dearly."""

    ingest: WebhookIngest
    writer: LedgerWriter


class WebhookController(Controller):
    """`/webhooks/instagram`: where Meta delivers Instagram messaging events."""

    path = "/webhooks/instagram"
    tags = ["webhooks"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get(
        media_type=MediaType.TEXT,
        summary="Confirm the webhook subscription",
        responses={},
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
    )
    async def receive(
        self, request: Request[Any, Any, Any], intake: NamedDependency[WebhookIntake]
    ) -> str:
        """Store every messaging item of a signed body, then answer `EVENT_RECEIVED`.

        The answer comes only after the events are committed: 401 for a bad signature,
        400 for a body that is not an Instagram webhook, 503 when nothing could be stored
        (Meta delivers it again), 413 for a body over the size limit.
        """
        body = await request.body()
        command = intake.ingest.command(body, request.headers.get("x-hub-signature-256"))
        await intake.writer.run(command)
        return "EVENT_RECEIVED"
