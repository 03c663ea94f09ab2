"""The console's audit timeline: one conversation's events, and its state at any version."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from typing import Annotated
from uuid import UUID

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from application.audit import AuditLog, type_of
from application.ledger import Ledger
from interfaces.console.access import Viewer
from interfaces.console.pages import page
from interfaces.console.verification import Verifications
from projections.as_of import conversation_as_of


class AuditPages(Controller):
    """What happened to a conversation, in order, and how it looked after each event."""

    path = "/accounts/{account_id:str}/conversations/{conversation_id:uuid}/audit"

    @get()
    async def timeline(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        ledger: NamedDependency[Ledger],
        verifications: NamedDependency[Verifications],
        version: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> Template:
        """The conversation's events, and its state at `version` (the latest by default),
        folded by the same code as the `state?version=` endpoint."""
        events = await asyncio.to_thread(
            AuditLog(ledger).conversation_events, console_account, conversation_id
        )
        latest = events[-1].originator_version
        chosen = min(version or latest, latest)
        row, messages = conversation_as_of(e for e in events if e.originator_version <= chosen)
        return page(
            "audit.html",
            viewer=viewer,
            account=console_account,
            conversation_id=str(conversation_id),
            events=[
                {"version": e.originator_version, "type": type_of(e), "at": e.timestamp}
                for e in events
            ],
            version=chosen,
            latest=latest,
            state=row,
            messages=messages,
            verifiable=verifications.available,
            verified=verifications.last(console_account),
        )

    @post("/verify")
    async def verify(
        self,
        console_account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        verifications: NamedDependency[Verifications],
    ) -> Redirect:
        """Verify the account's hash chain (`audit verify --account`); it changes nothing,
        so auditors may too."""
        await asyncio.to_thread(verifications.run, console_account)
        path = f"/console/accounts/{console_account}/conversations/{conversation_id}/audit"
        return Redirect(path, status_code=303)
