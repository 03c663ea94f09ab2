"""`/api/v1/accounts/{account_id}/conversations`: the CRM's view of an account's threads.

Over 300 lines: one controller for the conversation resource and its sub-resources
(messages, replies, hand-over), each handler wire type -> use case -> wire type; the wire
types are in `wire.py`, the use cases in `application/replies.py` and `conversations.py`.
"""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from litestar import Controller, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from application.api_keys import Principal
from application.conversations import Conversations
from application.errors import InvalidInput, NotFound
from application.ledger import Ledger
from application.ledger_writer import Command, LedgerWriter
from application.ports import Clock
from application.replies import (
    ReplyRequest,
    held_because,
    reply_attempts,
    reply_state,
    request_reply,
)
from interfaces.http import cursors
from interfaces.http.openapi import problems
from interfaces.http.wire import (
    ChangeConversation,
    ChangeStored,
    Conversation,
    ConversationPage,
    Message,
    MessagePage,
    ReplyStatus,
)
from projections.registry import ReadModels

READ_MODEL_WAIT = 2.0
"""Seconds a change waits for the conversation list to show it before answering 202."""
BEHIND = {"Dmledger-Read-Models": "behind"}
"""Says the change is stored but the read models do not show it yet."""

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="At most this many items.")]
Cursor = Annotated[
    str | None, QueryParameter(description="`next_cursor` or `prev_cursor` of a previous page.")
]


class ConversationController(Controller):
    """An account's conversations and their messages."""

    path = "/api/v1/accounts/{account_id:str}/conversations"
    tags = ["conversations"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get(responses=problems(401, 404, 422))
    async def list_conversations(
        self,
        account: NamedDependency[str],
        read_models: NamedDependency[ReadModels],
        limit: Limit = 50,
        cursor: Cursor = None,
        status: Annotated[
            Literal["active", "archived", "blocked"] | None,
            QueryParameter(description="Only conversations with this status."),
        ] = None,
        updated_since: Annotated[
            datetime | None,
            QueryParameter(description="Only conversations changed at or after this time."),
        ] = None,
        unread: Annotated[
            bool | None, QueryParameter(description="Only those with (true) or without unread.")
        ] = None,
    ) -> ConversationPage:
        """List the account's conversations, most recently changed first."""
        before = cursors.decode(cursor, fields=("p",))["p"] if cursor else None
        if updated_since is not None and updated_since.tzinfo is None:
            raise InvalidInput("updated_since", "updated_since needs a time zone (RFC 3339)")
        rows = await asyncio.to_thread(
            read_models.conversation_list.page,
            account,
            limit=limit + 1,
            before_position=before,
            status=status,
            updated_since_ms=int(updated_since.timestamp() * 1000) if updated_since else None,
            unread=unread,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursors.encode({"p": rows[-1]["updated_position"]}) if more else None
        return ConversationPage([Conversation.of(r) for r in rows], next_cursor)

    @get("/{conversation_id:uuid}", responses=problems(401, 404, 422))
    async def get_conversation(
        self,
        account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        read_models: NamedDependency[ReadModels],
    ) -> Conversation:
        """Show one conversation."""
        return await self._conversation(read_models, account, conversation_id)

    @patch("/{conversation_id:uuid}", responses=problems(401, 403, 404, 422, 503))
    async def change_conversation(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        conversation_id: FromPath[UUID],
        data: JSONBody[ChangeConversation],
        conversations: NamedDependency[Conversations],
        writer: NamedDependency[LedgerWriter],
        read_models: NamedDependency[ReadModels],
    ) -> Response[Conversation | ChangeStored]:
        """Archive, reopen or block a conversation, or mark it read; each is an event on it.

        Answers with the conversation as the conversation list shows it once the change
        is in it.
        """
        command = conversations.change(
            writable_account,
            conversation_id,
            status=data.status,
            read=bool(data.read),
            by=f"api-key:{principal.key_id}",
        )
        return await self._changed(writer, command, read_models, writable_account, conversation_id)

    @post(
        "/{conversation_id:uuid}/handover",
        status_code=HTTP_200_OK,
        responses=problems(401, 403, 404, 503),
    )
    async def hand_over(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        conversation_id: FromPath[UUID],
        conversations: NamedDependency[Conversations],
        writer: NamedDependency[LedgerWriter],
        read_models: NamedDependency[ReadModels],
        clock: NamedDependency[Clock],
    ) -> Response[Conversation | ChangeStored]:
        """A person takes over: automation pauses for this conversation (`AutomationPaused`)."""
        command = conversations.hand_over(
            writable_account,
            conversation_id,
            at=clock.now_ms(),
            by=f"api-key:{principal.key_id}",
        )
        return await self._changed(writer, command, read_models, writable_account, conversation_id)

    @post(
        "/{conversation_id:uuid}/resume",
        status_code=HTTP_200_OK,
        responses=problems(401, 403, 404, 503),
    )
    async def resume(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        conversation_id: FromPath[UUID],
        conversations: NamedDependency[Conversations],
        writer: NamedDependency[LedgerWriter],
        read_models: NamedDependency[ReadModels],
    ) -> Response[Conversation | ChangeStored]:
        """Automation may answer this conversation again (`AutomationResumed`)."""
        command = conversations.resume(
            writable_account, conversation_id, by=f"api-key:{principal.key_id}"
        )
        return await self._changed(writer, command, read_models, writable_account, conversation_id)

    @post(
        "/{conversation_id:uuid}/replies",
        status_code=HTTP_202_ACCEPTED,
        responses=problems(400, 401, 403, 404, 409, 422, 503),
    )
    async def send_reply(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        conversation_id: FromPath[UUID],
        data: JSONBody[ReplyRequest],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                description="The same key with the same body sends the reply once.",
            ),
        ],
        writer: NamedDependency[LedgerWriter],
        read_models: NamedDependency[ReadModels],
        clock: NamedDependency[Clock],
    ) -> Response[ReplyStatus]:
        """Send a reply as a person (`ReplyQueued`, automation pauses). Answers 202 with
        the reply's id and where to see its status; the same key and body answer the same."""
        command = request_reply(
            writable_account,
            conversation_id,
            data,
            idempotency_key=idempotency_key or "",
            by=f"api-key:{principal.key_id}",
            at=clock.now_ms(),
        )
        accepted = await writer.run(command)
        row = await asyncio.to_thread(
            read_models.message_history.reply, str(conversation_id), accepted.reply_id
        )
        status = (
            ReplyStatus.of(row, writable_account)
            if row is not None
            else ReplyStatus.queued(
                writable_account, str(conversation_id), accepted.reply_id, data.text
            )
        )
        headers = {"Location": status.status_url}
        return Response(status, status_code=HTTP_202_ACCEPTED, headers=headers)

    @get("/{conversation_id:uuid}/replies/{reply_id:str}", responses=problems(401, 404))
    async def get_reply(
        self,
        account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        reply_id: FromPath[str],
        read_models: NamedDependency[ReadModels],
        ledger: NamedDependency[Ledger],
        clock: NamedDependency[Clock],
    ) -> ReplyStatus:
        """Show a reply: queued, sent (with Meta's message id), failed (with Meta's error).

        Answers from the moment the reply was accepted: until the message history shows
        it, from the conversation's own events."""
        status = await self._reply_status(read_models, ledger, account, conversation_id, reply_id)
        status.attempts = await asyncio.to_thread(reply_attempts, ledger, conversation_id, reply_id)
        if status.status in ("queued", "retrying"):
            now = clock.now_ms()
            held = await asyncio.to_thread(held_because, ledger, account, now)
            if held is not None:
                status.status, status.error = "held", held
        return status

    @staticmethod
    async def _reply_status(
        read_models: ReadModels, ledger: Ledger, account: str, conversation_id: UUID, reply_id: str
    ) -> ReplyStatus:
        row = await asyncio.to_thread(
            read_models.message_history.reply, str(conversation_id), reply_id
        )
        if row is not None:
            listed = await asyncio.to_thread(
                read_models.conversation_list.get, account, str(conversation_id)
            )
            if listed is not None:  # the conversation is this account's
                return ReplyStatus.of(row, account)
        # The account's own events say whether the conversation and the reply are its.
        state = await asyncio.to_thread(reply_state, ledger, account, conversation_id, reply_id)
        if state is None:
            raise NotFound(f"there is no reply {reply_id} in this conversation")
        if row is not None:
            return ReplyStatus.of(row, account)
        return ReplyStatus.recorded(account, str(conversation_id), state)

    @get("/{conversation_id:uuid}/messages", responses=problems(401, 404, 422))
    async def list_messages(
        self,
        account: NamedDependency[str],
        conversation_id: FromPath[UUID],
        read_models: NamedDependency[ReadModels],
        limit: Limit = 50,
        cursor: Cursor = None,
        order: Annotated[
            Literal["oldest_first", "newest_first"],
            QueryParameter(description="Order of the first page (a cursor keeps its own)."),
        ] = "oldest_first",
    ) -> MessagePage:
        """List a conversation's messages in the order they were sent, in pages."""
        conversation = await self._conversation(read_models, account, conversation_id)
        newest_first = order == "newest_first"
        after = before = None
        if cursor:
            place = cursors.decode(cursor, fields=("t", "p"))
            newest_first = bool(place.get("desc"))
            if newest_first:
                before = (place["t"], place["p"])
            else:
                after = (place["t"], place["p"])
        rows = await asyncio.to_thread(
            read_models.message_history.page,
            str(conversation_id),
            limit=limit + 1,
            after=after,
            before=before,
            newest_first=newest_first,
        )
        more = len(rows) > limit
        rows = rows[:limit]

        def place_of(row: dict[str, int], desc: bool) -> str:
            return cursors.encode({"t": row["sent_at"], "p": row["position"], "desc": desc})

        next_cursor = place_of(rows[-1], newest_first) if more else None
        prev_cursor = place_of(rows[0], not newest_first) if rows and cursor else None
        return MessagePage(
            conversation.participant, [Message.of(r) for r in rows], next_cursor, prev_cursor
        )

    @classmethod
    async def _changed(
        cls,
        writer: LedgerWriter,
        command: Command[bool],
        read_models: ReadModels,
        account: str,
        conversation_id: UUID,
    ) -> Response[Conversation | ChangeStored]:
        """Run a change, then answer with the conversation once the list shows it.

        The change is stored when the command returns: if the conversation list does not
        follow within `READ_MODEL_WAIT` seconds (its runner is stopped or far behind), the
        answer is 202 with `Dmledger-Read-Models: behind`, never an error."""
        await writer.run(command)
        try:
            await asyncio.to_thread(
                read_models.wait_for, "conversation_list", timeout=READ_MODEL_WAIT
            )
        except TimeoutError:
            stored = ChangeStored(conversation_id=str(conversation_id))
            return Response(stored, status_code=HTTP_202_ACCEPTED, headers=BEHIND)
        return Response(await cls._conversation(read_models, account, conversation_id))

    @staticmethod
    async def _conversation(
        read_models: ReadModels, account: str, conversation_id: UUID
    ) -> Conversation:
        row = await asyncio.to_thread(
            read_models.conversation_list.get, account, str(conversation_id)
        )
        if row is None:
            raise NotFound(f"there is no conversation {conversation_id} in this account")
        return Conversation.of(row)
