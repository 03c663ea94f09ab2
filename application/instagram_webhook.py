"""Reading Meta's Instagram messaging webhooks: the body's shape and what each item means.

The envelope is decoded into msgspec Structs; each messaging item stays a plain dict and
is read field by field, so fields and kinds Meta adds later are kept rather than lost.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from application.errors import MalformedWebhook
from application.handover_webhook import handover_changes, record_handover
from application.storable import (
    ID_LENGTH,
    LATEST_MS,
    MID_LENGTH,
    unstorable,
    without_nul,
)
from domain.conversation import Conversation

JSONObject = dict[str, Any]

# Keys of `message` that have a field of their own in the events; the rest go to `extra`.
_MESSAGE_KEYS = {
    "mid",
    "text",
    "attachments",
    "reply_to",
    "quick_reply",
    "referral",
    "is_echo",
    "is_deleted",
    "is_unsupported",
    "app_id",
}


class WebhookEntry(msgspec.Struct):
    """One `entry[]` of a webhook body: the items Meta delivers for one account."""

    id: str | int = ""
    time: int = 0
    messaging: list[JSONObject] = msgspec.field(default_factory=list)
    standby: list[JSONObject] = msgspec.field(default_factory=list)
    changes: list[JSONObject] = msgspec.field(default_factory=list)


class WebhookBody(msgspec.Struct):
    """A POST body from Meta's webhooks."""

    object: str
    entry: list[WebhookEntry]


_decoder = msgspec.json.Decoder(WebhookBody)


def read_webhook(body: bytes) -> WebhookBody:
    """Decode a webhook body, or raise `MalformedWebhook` saying what is wrong with it."""
    try:
        webhook = _decoder.decode(body)
    except msgspec.ValidationError as error:
        raise MalformedWebhook(f"not an Instagram webhook: {error}") from None
    except msgspec.DecodeError as error:
        raise MalformedWebhook(f"the body is not valid JSON: {error}") from None
    if webhook.object != "instagram":
        raise MalformedWebhook(
            "expected an Instagram webhook (object 'instagram'), "
            f"got object {webhook.object[:40]!r}"
        )
    _check_items(webhook)
    return webhook


MAX_EDIT_COUNT = 2**31 - 1
"""A message's edits are counted in an integer column (Meta allows a handful)."""

_OBJECTS = (
    "sender",
    "recipient",
    "message",
    "message_edit",
    "reaction",
    "read",
    "messaging_seen",
    "postback",
    "referral",
    "pass_thread_control",
    "take_thread_control",
    "release_thread_control",
    "request_thread_control",
)
"""Keys of an item whose value, when present, must be a JSON object."""


def _check_items(webhook: WebhookBody) -> None:
    """Refuse, as `MalformedWebhook` naming the field, a body with an item that cannot be
    stored faithfully, before any of it is stored (Meta may send it again; nothing of it
    is half-kept); replace NUL characters in items' strings by U+FFFD (see
    `application.storable`): a NUL has no meaning in a message, and a message is kept."""
    for e, entry in enumerate(webhook.entry):
        for name, item in (
            *((f"messaging[{i}]", item) for i, item in enumerate(entry.messaging)),
            *((f"standby[{i}]", item) for i, item in enumerate(entry.standby)),
            *((f"changes[{c}].value", item) for c, item in handover_changes(entry.changes)),
        ):
            path = f"entry[{e}].{name}"
            without_nul(item)
            problem = unstorable(item, path) or _shape_problem(item, path)
            if problem is not None:
                raise MalformedWebhook(f"{problem[0]} {problem[1]}")


def _shape_problem(item: JSONObject, path: str) -> tuple[str, str] | None:
    for key in _OBJECTS:
        value = item.get(key)
        if key in item and not isinstance(value, dict):
            return f"{path}.{key}", "must be a JSON object"
        if isinstance(value, dict) and "mid" in value and not isinstance(value["mid"], str):
            return f"{path}.{key}.mid", "must be a string"
        if isinstance(value, dict) and len(value.get("mid") or "") > MID_LENGTH:
            return f"{path}.{key}.mid", f"must be at most {MID_LENGTH} characters"
        party = key in ("sender", "recipient")
        if party and isinstance(value, dict) and len(str(value.get("id", ""))) > ID_LENGTH:
            return f"{path}.{key}.id", f"must be at most {ID_LENGTH} characters"
    edit = item.get("message_edit")
    if isinstance(edit, dict) and "num_edit" in edit:
        count = _int(edit["num_edit"])
        if not 0 <= count <= MAX_EDIT_COUNT:
            return f"{path}.message_edit.num_edit", "must be a count of edits (0 to 2^31 - 1)"
    if "timestamp" in item:
        at = item["timestamp"]
        if isinstance(at, str) and at.isdigit():
            at = int(at)
        if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at < LATEST_MS:
            return (
                f"{path}.timestamp",
                "must be milliseconds since 1970 (an integer from 0, before the year 10000)",
            )
    return None


@dataclass(frozen=True)
class RoutedItem:
    """A messaging item with the account and the participant it belongs to."""

    ig_account_id: str
    participant_id: str
    item: JSONObject
    standby: bool


def route_items(webhook: WebhookBody) -> tuple[list[RoutedItem], list[JSONObject]]:
    """Each messaging item with its account and participant; and the items that name neither.

    The account is the recipient of what a participant sends and the sender of an echo;
    `entry[].id` is not relied on, since some of Meta's own examples put a user id there.
    """
    routed: list[RoutedItem] = []
    unroutable: list[JSONObject] = []
    for entry in webhook.entry:
        # `messaging_handover` may come as a change whose value is a messaging item.
        handovers = [item for _, item in handover_changes(entry.changes)]
        for standby, items in (
            (False, entry.messaging),
            (True, entry.standby),
            (False, handovers),
        ):
            for item in items:
                sender = _id_of(item.get("sender"))
                recipient = _id_of(item.get("recipient"))
                if sender is None or recipient is None:
                    unroutable.append(item)
                    continue
                message = item.get("message")
                is_echo = isinstance(message, dict) and message.get("is_echo") is True
                account, participant = (sender, recipient) if is_echo else (recipient, sender)
                routed.append(RoutedItem(account, participant, item, standby))
    return routed, unroutable


def record_item(conversation: Conversation, routed: RoutedItem) -> bool:
    """Record one messaging item on its conversation; False if it was already recorded."""
    item, standby = routed.item, routed.standby
    at = _int(item.get("timestamp"))
    message = item.get("message")
    if isinstance(message, dict) and isinstance(message.get("mid"), str):
        mid = message["mid"]
        if message.get("is_deleted") is True:
            return conversation.unsend(mid=mid, unsent_at=at, standby=standby)
        extra = {k: v for k, v in message.items() if k not in _MESSAGE_KEYS}
        attachments = _objects(message.get("attachments"))
        if message.get("is_echo") is True:
            return conversation.record_echo(
                mid=mid,
                sent_at=at,
                text=_str(message.get("text")),
                attachments=attachments,
                reply_to=_object(message.get("reply_to")),
                app_id=_str(message.get("app_id")),
                standby=standby,
                extra=extra,
            )
        return conversation.receive_message(
            mid=mid,
            sent_at=at,
            text=_str(message.get("text")),
            attachments=attachments,
            reply_to=_object(message.get("reply_to")),
            quick_reply=_object(message.get("quick_reply")),
            referral=_object(message.get("referral")),
            unsupported=message.get("is_unsupported") is True,
            standby=standby,
            extra=extra,
        )
    edit = item.get("message_edit")
    if isinstance(edit, dict) and isinstance(edit.get("mid"), str):
        return conversation.edit_message(
            mid=edit["mid"],
            text=_str(edit.get("text")),
            edit_count=_int(edit.get("num_edit")),
            edited_at=at,
            standby=standby,
        )
    reaction = item.get("reaction")
    if isinstance(reaction, dict) and isinstance(reaction.get("mid"), str):
        sender = _id_of(item.get("sender")) or ""
        if reaction.get("action") == "unreact":
            return conversation.remove_reaction(
                mid=reaction["mid"],
                sender_id=sender,
                reaction=_str(reaction.get("reaction")),
                emoji=_str(reaction.get("emoji")),
                removed_at=at,
                standby=standby,
            )
        if reaction.get("action") in ("react", None):
            return conversation.add_reaction(
                mid=reaction["mid"],
                sender_id=sender,
                reaction=_str(reaction.get("reaction")),
                emoji=_str(reaction.get("emoji")),
                reacted_at=at,
                standby=standby,
            )
    read = item.get("read", item.get("messaging_seen"))
    if isinstance(read, dict):
        return conversation.mark_seen(mid=_str(read.get("mid")), seen_at=at, standby=standby)
    postback = item.get("postback")
    if isinstance(postback, dict):
        return conversation.receive_postback(
            mid=_str(postback.get("mid")),
            title=_str(postback.get("title")),
            payload=_str(postback.get("payload")),
            sent_at=at,
            standby=standby,
        )
    referral = item.get("referral")
    if isinstance(referral, dict):
        return conversation.receive_referral(referral=referral, sent_at=at, standby=standby)
    handed_over = record_handover(conversation, item, at=at, standby=standby)
    if handed_over is not None:
        return handed_over
    return conversation.record_unrecognised(
        item=item,
        fingerprint=hashlib.sha256(msgspec.json.encode(item, order="sorted")).hexdigest(),
        sent_at=at or None,
        standby=standby,
    )


def _id_of(party: object) -> str | None:
    if isinstance(party, dict):
        value = party.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _int(value: object) -> int:
    # Meta sends some numbers quoted (`num_edit` in Instagram's own example).
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _object(value: object) -> JSONObject | None:
    return value if isinstance(value, dict) else None


def _objects(value: object) -> list[JSONObject]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, dict)]
