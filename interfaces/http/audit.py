"""`/api/v1/accounts/{account_id}/events` and `.../conversations/{id}/state`: the auditor's view.

Any key that may read the account may use these (auditor keys are made for them); they
change nothing.
"""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from application.audit import AuditLog, parse_types
from application.errors import InvalidInput
from application.ledger import Ledger
from interfaces.http.audit_wire import ConversationState
from interfaces.http.openapi import problems
from interfaces.http.wire import Conversation, Message
from projections.as_of import conversation_as_of

NDJSON = "application/x-ndjson"


def provide_audit_log(ledger: NamedDependency[Ledger]) -> AuditLog:
    return AuditLog(ledger)


class AuditController(Controller):
    """An account's event log, and its conversations as of any moment."""

    path = "/api/v1/accounts/{account_id:str}"
    tags = ["audit"]  # noqa: RUF012 - Litestar reads it as a class attribute
    dependencies = {  # noqa: RUF012
        "audit_log": Provide(provide_audit_log, sync_to_thread=False),
    }

    @get(
        "/events",
        media_type=NDJSON,
        responses=problems(401, 404, 422),
        response_description="One JSON object a line: position, aggregate_id, version, type, "
        "timestamp, data. Credentials in `data` are ciphertext.",
    )
    async def list_events(
        self,
        account: NamedDependency[str],
        audit_log: NamedDependency[AuditLog],
        after: Annotated[
            int, QueryParameter(ge=0, description="Only events after this log position.")
        ] = 0,
        until: Annotated[
            datetime | None,
            QueryParameter(description="Only events recorded at or before this time (RFC 3339)."),
        ] = None,
        types: Annotated[
            list[str] | None,
            QueryParameter(
                description="Only events of these types, e.g. `Conversation.MessageReceived` "
                "(repeat the parameter, or separate with commas)."
            ),
        ] = None,
    ) -> Stream:
        """Stream the account's events (the account's and all its conversations') in log order,
        as NDJSON, up to the head of the log when the request came."""
        wanted = parse_types(types)
        if until is not None and until.tzinfo is None:
            raise InvalidInput("until", "until needs a time zone (RFC 3339), e.g. ...T10:00:00Z")
        head = await asyncio.to_thread(audit_log.head)
        lines = audit_log.ndjson(account, after=after, until=until, types=wanted, stop=head)
        return Stream(_in_a_thread(lines), media_type=NDJSON)

    @get("/conversations/{conversation_id:uuid}/state", responses=problems(401, 404, 422))
    async def conversation_state(
        self,
        account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        audit_log: NamedDependency[AuditLog],
        at: Annotated[
            datetime | None,
            QueryParameter(description="The conversation as it was at this time (RFC 3339)."),
        ] = None,
        version: Annotated[
            int | None,
            QueryParameter(ge=1, description="The conversation as it was at this version."),
        ] = None,
    ) -> ConversationState:
        """Show a conversation as it was at a time or a version (now, with neither), rebuilt
        from its events: its messages, status and automation state."""
        events = await asyncio.to_thread(
            audit_log.conversation_events, account, conversation_id, at=at, version=version
        )
        row, messages = conversation_as_of(events)
        assert row is not None  # every conversation's first event is Started
        return ConversationState(
            version=events[-1].originator_version,
            recorded_at=events[-1].timestamp,
            conversation=Conversation.of(row),
            messages=[Message.of(m) for m in messages],
        )


async def _in_a_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks of a blocking iterator, each read in a worker thread."""
    lock = threading.Lock()

    def step() -> bytes | None:
        with lock:
            return next(chunks, None)

    def close() -> None:
        # After a read still running in its thread (the client went away mid-chunk).
        with lock:
            getattr(chunks, "close", lambda: None)()

    try:
        while True:
            chunk = await asyncio.to_thread(step)
            if chunk is None:
                return
            yield chunk
    finally:
        asyncio.get_running_loop().run_in_executor(None, close)
