"""The account's CRM endpoint, and the deliveries made to it."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT
from msgspec import Meta

from application.api_keys import Principal
from application.crm_endpoints import CrmEndpoints, CrmEndpointView
from application.errors import InvalidInput
from application.ledger_writer import LedgerWriter
from application.redeliveries import Redeliveries
from infrastructure.delivery_queue import DeliveryQueue
from interfaces.http import cursors
from interfaces.http.openapi import problems


class SetCrmEndpoint(msgspec.Struct, forbid_unknown_fields=True):
    """Deliver this account's events to `url`. A new endpoint gets a `whsec_` secret,
    shown in this answer only; `rotate_secret` makes a new one for an existing endpoint."""

    url: Annotated[str, Meta(examples=["https://crm.example/hooks/instagram"])]
    event_types: list[str] | None = None
    """Which events to deliver; all when left out."""
    rotate_secret: bool = False


class Attempt(msgspec.Struct):
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    response: str | None = None


class Delivery(msgspec.Struct):
    """One notification to the CRM: its `webhook-id`, payload and attempts."""

    id: str
    type: str
    status: str
    attempts: list[Attempt]
    next_attempt_at: datetime | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, row: dict[str, Any]) -> "Delivery":
        status = row.get("status") or "pending"
        history = row.get("history") or []
        return cls(
            id=row["delivery_id"],
            type=row["kind"],
            status=status,
            attempts=[
                Attempt(
                    at=datetime.fromtimestamp(a["at"] / 1000, UTC),
                    status_code=a.get("status_code"),
                    latency_ms=a.get("latency_ms") or 0,
                    error=a.get("error"),
                    response=a.get("response"),
                )
                for a in history
            ],
            next_attempt_at=datetime.fromtimestamp(row["next_attempt_at"] / 1000, UTC)
            if status == "retrying" and row.get("next_attempt_at")
            else None,
            payload=msgspec.json.decode(row["body"]),
        )


class DeliveryPage(msgspec.Struct):
    deliveries: list[Delivery]
    next_cursor: str | None


class Redelivered(msgspec.Struct):
    redelivered: int


class CrmController(Controller):
    """Where the CRM gets its webhooks, and what became of them."""

    path = "/api/v1/accounts/{account_id:str}"
    tags = ["crm"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @put("/crm-endpoint", responses=problems(400, 401, 403, 404, 422, 503))
    async def set_crm_endpoint(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        data: JSONBody[SetCrmEndpoint],
        crm_endpoints: NamedDependency[CrmEndpoints],
        writer: NamedDependency[LedgerWriter],
    ) -> CrmEndpointView:
        """Set the CRM endpoint (`CrmEndpointSet`); the secret is stored encrypted. A URL
        whose host is on loopback, a private network or a metadata service gets 422."""
        # It resolves the URL's host: not on the event loop.
        command = await asyncio.to_thread(
            crm_endpoints.set,
            writable_account,
            url=data.url,
            event_types=data.event_types,
            rotate_secret=data.rotate_secret,
            by=f"api-key:{principal.key_id}",
        )
        return await writer.run(command)

    @get("/crm-endpoint", responses=problems(401, 404))
    async def get_crm_endpoint(
        self, account: NamedDependency[str], crm_endpoints: NamedDependency[CrmEndpoints]
    ) -> CrmEndpointView:
        """Show the CRM endpoint (never its secret)."""
        return await asyncio.to_thread(crm_endpoints.get, account)

    @delete("/crm-endpoint", status_code=HTTP_204_NO_CONTENT, responses=problems(401, 403, 404))
    async def remove_crm_endpoint(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        crm_endpoints: NamedDependency[CrmEndpoints],
        writer: NamedDependency[LedgerWriter],
    ) -> None:
        """Stop delivering to the CRM (`CrmEndpointRemoved`)."""
        await writer.run(crm_endpoints.remove(writable_account, by=f"api-key:{principal.key_id}"))

    @get("/deliveries", responses=problems(401, 404, 422))
    async def list_deliveries(
        self,
        account: NamedDependency[str],
        delivery_queue: NamedDependency[DeliveryQueue],
        status: Annotated[
            Literal["pending", "sending", "retrying", "delivered", "dead", "failed"] | None,
            QueryParameter(description="`failed` means retrying or dead."),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
    ) -> DeliveryPage:
        """List the CRM deliveries, newest first, with each attempt (time, status code,
        latency, error, the start of the response)."""
        before = cursors.decode(cursor, fields=("p",))["p"] if cursor else None
        rows = await asyncio.to_thread(
            delivery_queue.deliveries,
            account,
            status=status,
            limit=limit + 1,
            before_position=before,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursors.encode({"p": rows[-1]["position"]}) if more else None
        return DeliveryPage([Delivery.of(r) for r in rows], next_cursor)

    @post(
        "/deliveries/{delivery_id:str}/redeliver",
        status_code=HTTP_202_ACCEPTED,
        responses=problems(401, 403, 404),
    )
    async def redeliver_one(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        delivery_id: FromPath[str],
        redeliveries: NamedDependency[Redeliveries],
    ) -> Redelivered:
        """Deliver one notification again, with the same `webhook-id`
        (`DeliveriesRedelivered` records who asked)."""
        count = await redeliveries.one(
            writable_account, delivery_id, by=f"api-key:{principal.key_id}"
        )
        return Redelivered(count)

    @post("/deliveries/redeliver", status_code=HTTP_200_OK, responses=problems(401, 403, 404, 422))
    async def redeliver_since(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        redeliveries: NamedDependency[Redeliveries],
        since: Annotated[datetime, QueryParameter(description="Every delivery made since then.")],
    ) -> Redelivered:
        """Deliver every notification since a time again (after a CRM outage, say);
        `DeliveriesRedelivered` records who asked."""
        if since.tzinfo is None:
            raise InvalidInput("since", "since needs a time zone (RFC 3339)")
        count = await redeliveries.since(
            writable_account, int(since.timestamp() * 1000), by=f"api-key:{principal.key_id}"
        )
        return Redelivered(count)
