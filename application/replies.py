"""Replies the CRM sends through dmledger, idempotently."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

import msgspec

from application.errors import Conflict, InvalidInput, NotFound
from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from application.reply_messages import (
    AttachmentReply,
    GenericTemplate,
    QuickReply,
    ReactionReply,
    ReactionRequest,
    ReplyMessage,
    SenderActionReply,
    TemplateReply,
    TextReply,
    as_json,
    check,
    is_message,
    kind_of,
    text_of,
)
from application.reply_windows import refusal
from domain.conversation import REPLY_FAILED, REPLY_SENT, Conversation, ReplyStatus


class ReplyRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A reply to send, one kind of: a text (with `quick_replies`), an attachment (by
    `attachment_url`, or `attachment_id`), a `template`, a `reaction`, a `sender_action`
    (see `application/reply_messages.py`)."""

    text: str | None = None
    attachment_url: str | None = None
    attachment_type: str | None = None
    """image, video, audio or file (a PDF)."""
    quick_replies: list[QuickReply] | None = None
    attachment_id: str | None = None
    reusable: bool = False
    """Upload `attachment_url` once and send it by its attachment id from then on."""
    template: GenericTemplate | None = None
    reaction: ReactionRequest | None = None
    sender_action: str | None = None
    """typing_on, typing_off or mark_seen."""


class _FirstReplyRequest(msgspec.Struct):
    """The request as it was before replies had kinds: its fingerprint stays the same."""

    text: str | None
    attachment_url: str | None
    attachment_type: str | None


def _fingerprint(request: ReplyRequest) -> str:
    first = _FirstReplyRequest(request.text, request.attachment_url, request.attachment_type)
    same = (
        msgspec.structs.replace(request, text=None, attachment_url=None, attachment_type=None)
        == ReplyRequest()
    )
    encoded = msgspec.json.encode(first if same else request)
    return hashlib.sha256(encoded).hexdigest()


def reply_of(request: ReplyRequest) -> ReplyMessage:
    """The reply a request asks for, checked against Meta's limits (`InvalidInput` naming
    the field otherwise)."""
    given = [
        name
        for name, value in (
            ("text", request.text is not None or request.quick_replies),
            ("attachment", request.attachment_url or request.attachment_id),
            ("template", request.template),
            ("reaction", request.reaction),
            ("sender_action", request.sender_action),
        )
        if value
    ]
    if len(given) != 1:
        raise InvalidInput(
            "text",
            "give one of text (with quick_replies), attachment_url or attachment_id, "
            "template, reaction, sender_action",
        )
    reply: ReplyMessage
    if given == ["text"]:
        reply = TextReply(text=request.text or "", quick_replies=request.quick_replies or [])
    elif given == ["attachment"]:
        if request.attachment_type is None:
            raise InvalidInput(
                "attachment_type", "say what the attachment is: image, video, audio, file"
            )
        reply = AttachmentReply(
            media_type=request.attachment_type,
            url=request.attachment_url,
            attachment_id=request.attachment_id,
            reusable=request.reusable,
        )
    elif request.template is not None:
        reply = TemplateReply(elements=request.template.elements)
    elif request.reaction is not None:
        reaction = request.reaction
        if reaction.remove and reaction.reaction is not None:
            raise InvalidInput("reaction.reaction", "a reaction taken back names no reaction")
        if not reaction.remove and reaction.reaction is None:
            raise InvalidInput("reaction.reaction", "say which reaction, or remove: true")
        reply = ReactionReply(message_id=reaction.message_id, reaction=reaction.reaction)
    else:
        reply = SenderActionReply(action=request.sender_action or "")
    check(reply)
    return reply


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
    reply = reply_of(request)
    fingerprint = _fingerprint(request)
    record_key = f"request:{key}"
    reply_id = str(uuid5(conversation_id, record_key))

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
            text_of(reply),
            automated=False,
            last_inbound=conversation.last_inbound_at,
            now=at,
            message=is_message(reply),
        )
        if refused is not None:
            # Meta would refuse it: say so now rather than accept a reply that must fail.
            raise InvalidInput(*refused)
        if isinstance(reply, ReactionReply) and not conversation.has_recorded(
            f"message:{reply.message_id}"
        ):
            raise InvalidInput(
                "reaction.message_id",
                f"there is no message {reply.message_id} in this conversation",
            )
        conversation.queue_reply(
            reply_id=reply_id,
            text=text_of(reply),
            key=record_key,
            automated=False,
            in_reply_to=None,
            rule_id=None,
            rule_version=None,
            trigger_at=None,
            by=by,
            request_hash=fingerprint,
            message=as_json(reply),
            kind=kind_of(reply),
        )
        conversation.pause_automation(at=at, by=by, reason="human_reply")
        return ReplyAccepted(reply_id=reply_id, created=True)

    return request_it
