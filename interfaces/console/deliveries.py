"""The console's CRM deliveries: the failed and dead ones with every attempt, redelivery,
and the account's endpoint with its circuit state."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from application.crm_endpoints import CrmEndpoints
from application.dispatcher import Dispatcher
from application.errors import InvalidInput, NotFound
from application.ports import Clock
from application.redeliveries import Redeliveries
from infrastructure.delivery_queue import DeliveryQueue
from interfaces.console.access import Viewer, acting
from interfaces.console.pages import page

Shown = Literal["failed", "dead", "retrying", "delivered", "pending", "all"]


class DeliveryPages(Controller):
    """What the account's CRM was sent, and what came of it."""

    path = "/accounts/{account_id:str}/deliveries"

    @get()
    async def list_deliveries(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        delivery_queue: NamedDependency[DeliveryQueue],
        crm_endpoints: NamedDependency[CrmEndpoints],
        dispatcher: NamedDependency[Dispatcher],
        clock: NamedDependency[Clock],
        status: Annotated[Shown, QueryParameter()] = "failed",
    ) -> Template:
        """Deliveries (the failed ones first shown), newest first, each with its attempts."""
        rows = await asyncio.to_thread(
            delivery_queue.deliveries,
            console_account,
            status=None if status == "all" else status,
            limit=100,
            before_position=None,
        )
        try:
            endpoint = await asyncio.to_thread(crm_endpoints.get, console_account)
        except NotFound:
            endpoint = None
        failures, resting_until = dispatcher.crm_circuit(endpoint.url) if endpoint else (0, 0)
        return page(
            "deliveries.html",
            viewer=viewer,
            account=console_account,
            status=status,
            deliveries=[_delivery(r) for r in rows],
            endpoint=endpoint,
            failures=failures,
            resting_until=resting_until if resting_until > clock.now_ms() else None,
        )

    @post("/redeliver")
    async def redeliver_since(
        self,
        request: Request[Any, Any, Any],
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        redeliveries: NamedDependency[Redeliveries],
    ) -> Redirect:
        """Deliver every notification since a time (UTC) again."""
        by = acting(viewer, console_account)
        given = str((await request.form()).get("since") or "")
        try:
            since = datetime.fromisoformat(given).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidInput("since", "give the time to redeliver from") from None
        await redeliveries.since(console_account, int(since.timestamp() * 1000), by=by)
        return Redirect(f"/console/accounts/{console_account}/deliveries", status_code=303)

    @post("/{delivery_id:str}/redeliver")
    async def redeliver_one(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        delivery_id: FromPath[str],
        redeliveries: NamedDependency[Redeliveries],
    ) -> Redirect:
        """Deliver one notification again, with the same `webhook-id`."""
        by = acting(viewer, console_account)
        await redeliveries.one(console_account, delivery_id, by=by)
        return Redirect(f"/console/accounts/{console_account}/deliveries", status_code=303)


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    payload = msgspec.json.decode(row["body"])
    return {
        "id": row["delivery_id"],
        "type": row["kind"],
        "status": row.get("status") or "pending",
        "created_at": row.get("created_at"),
        "next_attempt_at": row.get("next_attempt_at") if row.get("status") == "retrying" else None,
        "attempts": row.get("history") or [],
        "conversation_id": (payload.get("data") or {}).get("conversation_id"),
    }
