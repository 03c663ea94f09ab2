"""What a message looks like in one line, and what kind of message it is."""

from __future__ import annotations

from typing import Any

from application.storable import NAME_LENGTH
from domain.content import is_erased
from domain.conversation import Conversation

Message = Conversation.MessageReceived | Conversation.MessageEchoed

PREVIEW_LENGTH = 200


KIND_LENGTH = NAME_LENGTH
"""The longest kind a message has: Meta's attachment types are short names (`image`,
`story_mention`, `ig_reel`); a type longer than this is shown as an `attachment`."""


def kind_of(attachments: list[dict[str, Any]], event: Message) -> str:
    """text, story_reply, unsupported, or the type of the first attachment (`attachment`
    when it has none, or one longer than `KIND_LENGTH`)."""
    if getattr(event, "unsupported", False):
        return "unsupported"
    reply_to = getattr(event, "reply_to", None)
    if isinstance(reply_to, dict) and "story" in reply_to:
        return "story_reply"
    if attachments:
        kind = attachments[0].get("type")
        if isinstance(kind, str) and 0 < len(kind) <= KIND_LENGTH:
            return kind
        return "attachment"
    return "text"


def preview_of(text: str | None, attachments: list[dict[str, Any]], event: Message) -> str:
    """The message's text, or its kind in brackets (`[erased]` once its content is gone)."""
    if is_erased(event):
        return "[erased]"
    if text:
        return text if len(text) <= PREVIEW_LENGTH else text[: PREVIEW_LENGTH - 1] + "…"
    return f"[{kind_of(attachments, event)}]"
