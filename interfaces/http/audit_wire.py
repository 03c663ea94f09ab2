"""The audit API's JSON shapes (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from interfaces.http.wire import Conversation, Message


class ConversationState(msgspec.Struct):
    """A conversation as it was at one version, rebuilt from its events."""

    version: Annotated[
        int, Meta(description="The conversation's version then: how many events it had.")
    ]
    recorded_at: Annotated[
        datetime, Meta(description="When dmledger recorded that version's event.")
    ]
    conversation: Annotated[
        Conversation,
        Meta(description="As the conversation list showed it then (status, automation, unread)."),
    ]
    messages: Annotated[
        list[Message],
        Meta(description="Every message it had then, in the order they were sent."),
    ]
