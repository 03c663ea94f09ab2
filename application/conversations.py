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
            conversation = _conversation(changes, ig_account_id, conversation_id)
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

    def hand_over(
        self, ig_account_id: str, conversation_id: UUID, *, at: int, by: str
    ) -> Command[bool]:
        """The command that pauses automation: a person answers this conversation now."""

        def hand_over(changes: Changes) -> bool:
            conversation = _conversation(changes, ig_account_id, conversation_id)
            return conversation.pause_automation(at=at, by=by, reason="handover")

        return hand_over

    def resume(self, ig_account_id: str, conversation_id: UUID, *, by: str) -> Command[bool]:
        """The command that lets automation answer this conversation again."""

        def resume(changes: Changes) -> bool:
            conversation = _conversation(changes, ig_account_id, conversation_id)
            return conversation.resume_automation(by=by)

        return resume


def _conversation(changes: Changes, ig_account_id: str, conversation_id: UUID) -> Conversation:
    conversation = changes.get(conversation_id, Conversation)
    if conversation is None or conversation.ig_account_id != ig_account_id:
        raise NotFound(f"there is no conversation {conversation_id} in this account")
    return conversation
