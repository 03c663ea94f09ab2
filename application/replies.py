"""Replies the CRM sends through dmledger, idempotently."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid5

import msgspec

from application.errors import Conflict, InvalidInput, NotFound
from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from application.reply_windows import refusal
from domain.conversation import REPLY_FAILED, REPLY_SENT, Conversation, ReplyStatus


class ReplyRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A reply to send: a text, or an attachment by URL."""

    text: str | None = None
    attachment_url: str | None = None
    attachment_type: Literal["image", "video", "audio", "file"] | None = None


class ReplyState(msgspec.Struct, frozen=True):
    """A reply as its conversation records it (before the message history may show it)."""

    reply_id: str
    state: ReplyStatus
    message_id: str | None


def reply_state(
    ledger: Ledger, ig_account_id: str, conversation_id: UUID, reply_id: str
) -> ReplyState | None:
    """Our reply `reply_id` as the conversation's own events say, or None: what a CRM is
    answered right after its reply was accepted, while the read models catch up."""
    conversation = ledger.find(conversation_id)
    if not isinstance(conversation, Conversation) or conversation.ig_account_id != ig_account_id:
        return None
    found = conversation.reply(reply_id)
    if found is None:
        return None
    return ReplyState(reply_id, found.status, found.message_id)


class ReplyAttempt(msgspec.Struct, frozen=True):
    """One try at sending a reply, as recorded: failed (retrying or for good) or sent."""

    at: datetime
    outcome: str
    """retrying, failed or sent."""
    error: dict[str, Any] | None = None
    """Meta's error (class, code, subcode, message, fbtrace_id) when it failed."""
    message_id: str | None = None
    """Meta's id of the sent message."""


def reply_attempts(ledger: Ledger, conversation_id: UUID, reply_id: str) -> list[ReplyAttempt]:
    """Every recorded try at sending `reply_id`, oldest first, from the conversation's events."""
    attempts: list[ReplyAttempt] = []
    for stored in ledger.events.get(conversation_id):
        event: Any = stored
        if getattr(event, "reply_id", None) != reply_id:
            continue
        at = event.timestamp
        if type(event).TOPIC == REPLY_SENT:
            attempts.append(ReplyAttempt(at, "sent", message_id=event.message_id))
        elif type(event).TOPIC == REPLY_FAILED:
            error = {
                "class": event.error_class,
                "code": event.code,
                "subcode": event.subcode,
                "message": event.message,
                "fbtrace_id": event.fbtrace_id,
            }
            outcome = "retrying" if event.retryable else "failed"
            attempts.append(ReplyAttempt(at, outcome, error=error))
    return attempts


def held_because(ledger: Ledger, ig_account_id: str, now: int) -> dict[str, Any] | None:
    """Why the account's replies wait now, if they do: Meta rejected its token (they wait
    for new credentials) or paused its sends (until a time); else None."""
    account = ledger.account(ig_account_id)
    if account is None:
        return None
    if account.token_rejected:
        return {
            "class": "token_rejected",
            "message": "Meta rejected the account's access token: replies wait for new credentials",
        }
    until = account.sends_paused_until
    if until is not None and until > now:
        return {
            "class": "sends_paused",
            "message": "Meta's rate limit paused the account's sends",
            "until": datetime.fromtimestamp(until / 1000, UTC).isoformat(),
        }
    return None


class ReplyAccepted(msgspec.Struct, frozen=True):
    reply_id: str
    created: bool
    """False when the same request was made before with this idempotency key."""


def request_reply(
    ig_account_id: str,
    conversation_id: UUID,
    request: ReplyRequest,
    *,
    idempotency_key: str,
    by: str,
    at: int,
) -> Command[ReplyAccepted]:
    """The command that queues a person's reply, once per idempotency key.

    The same key with the same body answers with the same reply; with another body it is
    a conflict. A person replying means a person handles the conversation: automation
    pauses for it.
    """
    key = idempotency_key.strip()
    if not key or len(key) > 200:
        raise InvalidInput(
            "Idempotency-Key", "send an Idempotency-Key header of 1 to 200 characters"
        )
    if bool(request.text) == bool(request.attachment_url):
        raise InvalidInput("text", "give either a text or an attachment_url")
    if request.attachment_url and not request.attachment_url.startswith("https://"):
        raise InvalidInput("attachment_url", "attachments are sent by https:// URL")
    if request.attachment_url and request.attachment_type is None:
        raise InvalidInput(
            "attachment_type", "say what the attachment is: image, video, audio, file"
        )
    fingerprint = hashlib.sha256(msgspec.json.encode(request)).hexdigest()
    record_key = f"request:{key}"
    reply_id = str(uuid5(conversation_id, record_key))
    attachment = (
        {"type": request.attachment_type or "file", "url": request.attachment_url}
        if request.attachment_url
        else None
    )

    def request_it(changes: Changes) -> ReplyAccepted:
        conversation = changes.get(conversation_id, Conversation)
        if conversation is None or conversation.ig_account_id != ig_account_id:
            raise NotFound(f"there is no conversation {conversation_id} in this account")
        earlier = conversation.requests.get(record_key)
        if earlier is not None:
            if earlier["hash"] != fingerprint:
                raise Conflict(
                    "this Idempotency-Key was used for another reply; use a new key for a new reply"
                )
            return ReplyAccepted(reply_id=earlier["reply_id"], created=False)
        refused = refusal(
            request.text or "",
            automated=False,
            last_inbound=conversation.last_inbound_at,
            now=at,
        )
        if refused is not None:
            # Meta would refuse it: say so now rather than accept a reply that must fail.
            raise InvalidInput(*refused)
        conversation.queue_reply(
            reply_id=reply_id,
            text=request.text or "",
            key=record_key,
            automated=False,
            in_reply_to=None,
            rule_id=None,
            rule_version=None,
            trigger_at=None,
            by=by,
            attachment=attachment,
            request_hash=fingerprint,
        )
        conversation.pause_automation(at=at, by=by, reason="human_reply")
        return ReplyAccepted(reply_id=reply_id, created=True)

    return request_it
