"""Erasing a participant (GDPR's right to erasure): the content of everything they sent
and were sent is destroyed, their data keys with it, and the log says who asked and when.

The conversation stays: its ids, counts and times are not the participant's content. New
messages from the same person are stored and readable as usual (under new keys).
"""

from __future__ import annotations

from collections.abc import Callable

from application.errors import NotFound
from application.ledger import Ledger
from application.ledger_writer import Changes
from domain.account import Account
from domain.conversation import Conversation
from domain.identity import account_id, conversation_id


def erase_participant(
    ledger: Ledger, ig_account_id: str, participant_id: str, *, by: str, now: int
) -> Callable[[Changes], int]:
    """A command that records `ParticipantErased`, whose insert destroys the data keys of
    the conversation with `participant_id`; it answers how many keys it destroys."""

    def erase(changes: Changes) -> int:
        if changes.get(account_id(ig_account_id), Account) is None:
            raise NotFound(f"there is no Instagram account {ig_account_id}")
        the_id = conversation_id(ig_account_id, participant_id)
        conversation = changes.get(the_id, Conversation)
        vault = ledger.vault
        # Counted here, in the writer's thread: no other command of this process stores a
        # key between the count and the insert that destroys them. A commenter's comments
        # are sealed under keys of their conversation (`domain.content.content_owner`).
        counts = vault.keys.key_counts([str(the_id)]) if vault is not None else {}
        destroyed = sum(counts.values())
        if conversation is None:
            if not destroyed:
                raise NotFound(
                    f"there is no conversation with participant {participant_id} in this account"
                )
            # Someone who only commented: their conversation starts to record the erasure.
            conversation = Conversation(ig_account_id=ig_account_id, participant_id=participant_id)
            changes.add(conversation)
        conversation.erase_participant(by=by, erased_at=now, destroyed=destroyed)
        return destroyed

    return erase
