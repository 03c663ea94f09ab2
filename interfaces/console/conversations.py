"""The console's conversations: the list, a thread, its live updates, replies and actions."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
import secrets
from contextlib import suppress
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, ServerSentEvent, Template

from application.conversations import Conversations, StatusChange
from application.errors import NotFound
from application.ledger_writer import LedgerWriter
from application.ports import Clock
from application.replies import ReplyRequest, request_reply
from interfaces.console.access import Viewer, acting
from interfaces.console.live import Announcements, digest
from interfaces.console.pages import page
from projections.registry import ReadModels

THREAD_LENGTH = 200
"""A thread shows its latest messages, up to this many."""

ACTIONS = ("archive", "block", "reopen", "read", "handover", "resume")
STATUS_OF: dict[str, StatusChange] = {"archive": "archived", "block": "blocked", "reopen": "active"}


class ConversationPages(Controller):
    """An account's conversations and their threads."""

    path = "/accounts/{account_id:str}/conversations"

    @get()
    async def list_conversations(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        read_models: NamedDependency[ReadModels],
        status: Annotated[
            Literal["active", "archived", "blocked", ""] | None, QueryParameter()
        ] = None,
        unread: Annotated[Literal["yes", "no", ""] | None, QueryParameter()] = None,
    ) -> Template:
        """The conversation list, most recently changed first, with its filters."""
        rows = await asyncio.to_thread(
            read_models.conversation_list.page,
            console_account,
            limit=200,
            status=status or None,
            unread={"yes": True, "no": False}.get(unread or ""),
        )
        return page(
            "conversations.html",
            viewer=viewer,
            account=console_account,
            conversations=rows,
            status=status or "",
            unread=unread or "",
        )

    @get("/{conversation_id:uuid}")
    async def show_thread(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        read_models: NamedDependency[ReadModels],
    ) -> Template:
        """A thread: its messages in Meta's order, what can be done with it, the reply box."""
        conversation = await _conversation(read_models, console_account, conversation_id)
        messages = await asyncio.to_thread(_thread, read_models, conversation_id)
        return page(
            "thread.html",
            viewer=viewer,
            account=console_account,
            conversation=conversation,
            messages=messages,
            shown=digest([conversation, messages]),
            idempotency_key=secrets.token_urlsafe(16),
        )

    @get("/{conversation_id:uuid}/messages")
    async def thread_messages(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        read_models: NamedDependency[ReadModels],
    ) -> Template:
        """The thread's state and messages, for the page to swap in when they change."""
        conversation = await _conversation(read_models, console_account, conversation_id)
        messages = await asyncio.to_thread(_thread, read_models, conversation_id)
        return page(
            "_thread.html",
            viewer=viewer,
            account=console_account,
            conversation=conversation,
            messages=messages,
        )

    @get("/{conversation_id:uuid}/live")
    async def follow_thread(
        self,
        console_account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        read_models: NamedDependency[ReadModels],
        announcements: NamedDependency[Announcements],
        shown: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> ServerSentEvent:
        """Server-sent events: `changed` whenever the thread's messages or state change
        (or have changed since the page showed the rows `shown` digests)."""
        await _conversation(read_models, console_account, conversation_id)

        def rows() -> object:
            row = read_models.conversation_list.get(console_account, str(conversation_id))
            return [row, _thread(read_models, conversation_id)]

        return ServerSentEvent(announcements.changes(rows, shown=shown))

    @post("/{conversation_id:uuid}/replies")
    async def send_reply(
        self,
        request: Request[Any, Any, Any],
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        writer: NamedDependency[LedgerWriter],
        clock: NamedDependency[Clock],
    ) -> Redirect:
        """Send a reply as a person; the form's idempotency key sends it once however often
        the form is submitted."""
        by = acting(viewer, console_account)
        form = await request.form()
        command = request_reply(
            console_account,
            conversation_id,
            ReplyRequest(text=str(form.get("text") or "")),
            idempotency_key=str(form.get("idempotency_key") or ""),
            by=by,
            at=clock.now_ms(),
        )
        await writer.run(command)
        return Redirect(_thread_path(console_account, conversation_id), status_code=303)

    @post("/{conversation_id:uuid}/{action:str}")
    async def act(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        action: FromPath[str],
        conversations: NamedDependency[Conversations],
        writer: NamedDependency[LedgerWriter],
        read_models: NamedDependency[ReadModels],
        clock: NamedDependency[Clock],
    ) -> Redirect:
        """Archive, block, reopen, mark read, hand over to a person, or resume automation."""
        if action not in ACTIONS:
            raise NotFound(f"there is no action {action!r}")
        by = acting(viewer, console_account)
        if action == "handover":
            command = conversations.hand_over(
                console_account, conversation_id, at=clock.now_ms(), by=by
            )
        elif action == "resume":
            command = conversations.resume(console_account, conversation_id, by=by)
        else:
            command = conversations.change(
                console_account,
                conversation_id,
                status=STATUS_OF.get(action),
                read=action == "read",
                by=by,
            )
        await writer.run(command)
        # Stored: show the thread once the list has it, or at once if it is behind (the
        # page refreshes itself), never an error for a stored change.
        with suppress(TimeoutError):
            await asyncio.to_thread(read_models.wait_for, "conversation_list", timeout=2.0)
        return Redirect(_thread_path(console_account, conversation_id), status_code=303)


def _thread(read_models: ReadModels, conversation_id: UUID) -> list[dict[str, Any]]:
    newest = read_models.message_history.page(
        str(conversation_id), limit=THREAD_LENGTH, newest_first=True
    )
    return newest[::-1]


async def _conversation(
    read_models: ReadModels, account: str, conversation_id: UUID
) -> dict[str, Any]:
    row = await asyncio.to_thread(read_models.conversation_list.get, account, str(conversation_id))
    if row is None:
        raise NotFound(f"there is no conversation {conversation_id} in this account")
    return row


def _thread_path(account: str, conversation_id: UUID) -> str:
    return f"/console/accounts/{account}/conversations/{conversation_id}"
