"""What the business does with a conversation: archive, reopen, block, mark read."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from application.errors import InvalidInput, NotFound
from application.ledger_writer import Changes, Command
from domain.conversation import Conversation

StatusChange = Literal["active", "archived", "blocked"]


class Conversations:
    """Use cases on conversations."""

    def change(
        self,
        ig_account_id: str,
        conversation_id: UUID,
        *,
        status: StatusChange | None,
        read: bool,
        by: str,
    ) -> Command[bool]:
        """The command that files a conversation and/or marks it read; True if anything changed."""
        if status is None and not read:
            raise InvalidInput("status", "say what to change: a status, or read: true")

        def change(changes: Changes) -> bool:
            conversation = changes.get(conversation_id, Conversation)
            if conversation is None or conversation.ig_account_id != ig_account_id:
                raise NotFound(f"there is no conversation {conversation_id} in this account")
            changed = False
            if status == "archived":
                changed |= conversation.archive(by=by)
            elif status == "blocked":
                changed |= conversation.block(by=by)
            elif status == "active":
                changed |= conversation.reopen(by=by)
            if read:
                conversation.mark_read(by=by)
                changed = True
            return changed

        return change
