"""Deliveries whose content was destroyed after they were queued: what they carry then.

The outbox holds each delivery's body as it was made. When the content it carries is
destroyed afterwards (an unsend, an erasure, the account's retention), the outbox
projection rewrites the body when the destroying event passes
(`projections/outbox/projection.py`), and a body made after it is made this way from the
start (`projections/shredding.py`). In between, the dispatcher may already hold the
delivery, or the projection may not have followed the log yet: so just before sending, the
dispatcher asks the key table whether each leased delivery's data key still exists
(`without_destroyed_content`, one query a lease), and a delivery whose key is gone leaves
as the projection would have rewritten it. The key table is the truth: its row is deleted
in the transaction that records the destroying event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import msgspec

from application.ports import ContentKeyStore, LeasedDelivery

CRM_CONTENT_KINDS = ("message.received", "message.echoed", "message.edited", "comment.received")
"""The CRM notifications that carry a message's (or a comment's) content."""


def erased_crm_body(body: str) -> str:
    """A CRM notification's body without the message's content: `"erased": true`."""
    envelope = msgspec.json.decode(body)
    data = envelope["data"]
    for name in ("reply_to", "quick_reply", "referral", "truncated"):
        data.pop(name, None)
    data["text"] = None
    if "attachments" in data:
        data["attachments"] = []
    data["erased"] = True
    return msgspec.json.encode(envelope).decode()


def erased_reply_body(body: str) -> str:
    """One of our replies, queued for the Send API, without its text, attachment and
    message."""
    reply = msgspec.json.decode(body)
    reply["text"] = None
    reply["attachment"] = None
    reply["message"] = None
    if isinstance(reply.get("comment"), dict):
        reply["comment"]["public_reply"] = None  # a private reply's public one
    reply["erased"] = True
    return msgspec.json.encode(reply).decode()


def anonymous_crm_body(body: str) -> str:
    """A CRM notification's body with the participant as their id alone (what their
    profile said is gone)."""
    envelope = msgspec.json.decode(body)
    participant = envelope["data"].get("participant")
    if not isinstance(participant, dict) or set(participant) <= {"id"}:
        return body
    envelope["data"]["participant"] = {"id": participant.get("id")}
    return msgspec.json.encode(envelope).decode()


def reply_erased(row: LeasedDelivery) -> bool:
    """Whether this leased reply's text is gone (it must not be sent)."""
    return row.channel == "instagram" and row.body_erased


def without_destroyed_content(
    keys: ContentKeyStore | None, rows: Sequence[LeasedDelivery]
) -> list[LeasedDelivery]:
    """The leased deliveries, each whose data key no longer exists as it leaves now: a CRM
    notification with its content erased, a reply marked `body_erased` (not to be sent)."""
    wanted = sorted({r.content_key for r in rows if r.content_key})
    if keys is None or not wanted:
        return list(rows)
    existing = keys.wrapped_keys(wanted)
    leaving: list[LeasedDelivery] = []
    for row in rows:
        if row.content_key is None or row.content_key in existing:
            leaving.append(row)
        elif row.channel == "crm":
            leaving.append(dataclasses.replace(row, body=erased_crm_body(row.body)))
        else:
            leaving.append(
                dataclasses.replace(row, body=erased_reply_body(row.body), body_erased=True)
            )
    return leaving
