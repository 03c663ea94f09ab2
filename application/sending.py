"""Commands that record what came of sending: on the conversation, and on the account.

Each reads what it changes with `fresh=True`: the dispatcher's process keeps aggregates in
memory, and other processes write them meanwhile (the auto-reply policy queues replies,
a person rotates credentials). A command that found nothing to change on a stale copy
(a reply it does not know yet) would store nothing and raise no conflict: the send would
go unrecorded. Read fresh, a stale copy makes the batch run again on the stored state.
"""

from __future__ import annotations

from uuid import UUID

from application.delivery import MetaError
from application.ledger_writer import Changes, Command
from domain.account import Account
from domain.conversation import Conversation
from domain.identity import account_id


def reply_sent(
    conversation_id: UUID, reply_id: str, message_id: str | None, at: int
) -> Command[bool]:
    def record(changes: Changes) -> bool:
        conversation = changes.get(conversation_id, Conversation, fresh=True)
        if conversation is None:
            return False
        return conversation.record_reply_sent(reply_id=reply_id, message_id=message_id, sent_at=at)

    return record


def reply_failed(
    conversation_id: UUID,
    reply_id: str,
    *,
    error_class: str,
    retryable: bool,
    error: MetaError | None,
    detail: str,
    attempt: int,
) -> Command[bool]:
    def record(changes: Changes) -> bool:
        conversation = changes.get(conversation_id, Conversation, fresh=True)
        if conversation is None:
            return False
        return conversation.record_reply_failed(
            reply_id=reply_id,
            error_class=error_class,
            retryable=retryable,
            code=error.code if error else None,
            subcode=error.subcode if error else None,
            message=(error.message if error else detail)[:1000],
            fbtrace_id=error.fbtrace_id if error else None,
            attempt=attempt,
        )

    return record


def token_rejected(ig_account_id: str, error: MetaError, at: int) -> Command[bool]:
    def record(changes: Changes) -> bool:
        account = changes.get(account_id(ig_account_id), Account, fresh=True)
        if account is None:
            return False
        return account.reject_token(
            code=error.code or 190, subcode=error.subcode, message=error.message, at=at
        )

    return record


def sends_paused(ig_account_id: str, *, until: int, code: int | None, reason: str) -> Command[bool]:
    def record(changes: Changes) -> bool:
        account = changes.get(account_id(ig_account_id), Account, fresh=True)
        if account is None:
            return False
        account.pause_sends(until=until, code=code, reason=reason)
        return True

    return record


def crm_endpoint_gone(ig_account_id: str, reason: str) -> Command[bool]:
    def record(changes: Changes) -> bool:
        account = changes.get(account_id(ig_account_id), Account, fresh=True)
        if account is None:
            return False
        return account.disable_crm_endpoint(reason=reason)

    return record


def token_refreshed(ig_account_id: str, sealed_token: str, at: int) -> Command[bool]:
    def record(changes: Changes) -> bool:
        account = changes.get(account_id(ig_account_id), Account, fresh=True)
        if account is None:
            return False
        account.rotate_credentials(sealed={"access_token": sealed_token}, at=at, by="token-refresh")
        return True

    return record


def token_refresh_failed(ig_account_id: str, message: str, at: int) -> Command[bool]:
    def record(changes: Changes) -> bool:
        account = changes.get(account_id(ig_account_id), Account, fresh=True)
        if account is None:
            return False
        account.fail_token_refresh(message=message, at=at)
        return True

    return record
