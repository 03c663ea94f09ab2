"""`/api/v1/accounts/{account_id}/backfill`: an account's existing conversations, read from
Meta's Conversations API in the background (admin keys; see `application/backfill.py`)."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from application.api_keys import Principal
from application.backfill_runs import BackfillRun, BackfillRuns
from application.errors import Forbidden, InvalidInput, NotFound
from domain.api_key import Role
from interfaces.http.openapi import problems


class BackfillStatus(msgspec.Struct):
    """The account's last backfill started by this process."""

    state: Literal["running", "done", "failed"]
    started_at: datetime
    conversations: int
    """Conversations read so far."""
    messages: int
    """Messages read so far."""
    stored: int
    """Of those, the ones not stored before (the others came by webhook or an earlier run)."""
    error: str | None
    status_url: str


def _status(run: BackfillRun) -> BackfillStatus:
    return BackfillStatus(
        state=run.state,
        started_at=datetime.fromtimestamp(run.started_at / 1000, UTC),
        conversations=run.conversations,
        messages=run.messages,
        stored=run.stored,
        error=run.error,
        status_url=f"/api/v1/accounts/{run.ig_account_id}/backfill",
    )


def _admin(principal: Principal) -> None:
    if principal.role != Role.ADMIN:
        raise Forbidden("a backfill needs an admin key")


class BackfillController(Controller):
    """Filling an empty deployment (or a new account) with the conversations Meta has."""

    path = "/api/v1/accounts/{account_id:str}/backfill"
    tags = ["accounts"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post("/", status_code=HTTP_202_ACCEPTED, responses=problems(401, 403, 404, 409, 422))
    async def start_backfill(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        backfills: NamedDependency[BackfillRuns],
        since: Annotated[
            datetime | None,
            QueryParameter(description="Only messages sent at or after this moment."),
        ] = None,
        notify_crm: Annotated[
            bool,
            QueryParameter(description="Tell the CRM of each backfilled message."),
        ] = False,
    ) -> Response[BackfillStatus]:
        """Start reading the account's conversations and messages from Meta (2 calls a
        second); each message not stored yet is stored, marked backfilled. 409 while one
        runs; `GET` follows it."""
        _admin(principal)
        if since is not None and since.tzinfo is None:
            raise InvalidInput("since", "since needs a time zone (RFC 3339)")
        run = backfills.start(account, since=since, notify_crm=notify_crm)
        status = _status(run)
        return Response(
            status, status_code=HTTP_202_ACCEPTED, headers={"Location": status.status_url}
        )

    @get("/", responses=problems(401, 403, 404))
    async def backfill_status(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        backfills: NamedDependency[BackfillRuns],
    ) -> BackfillStatus:
        """How far the account's last backfill (started by this process) went."""
        _admin(principal)
        run = backfills.last(account)
        if run is None:
            raise NotFound(f"no backfill of {account} was started by this process")
        return _status(run)
