"""The auto-reply policy: follows the log and records a decision on each inbound message,
and pauses automation when a person answers from the Instagram app.

It keeps no rows, only its position: each decision is a command on the ledger (an event on
the conversation), keyed by the message, so running one again after a crash changes
nothing. It is not rebuilt from zero: that would answer messages of the past.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from application.auto_reply import TRIGGER_TOPICS, AutoReplies, echo_command
from application.errors import StorageUnavailable
from application.ledger_writer import Command, LedgerWriter
from domain.conversation import MESSAGE_ECHOED
from projections.projection import LedgerProjection
from projections.view import SqlView

log = logging.getLogger(__name__)


class PolicyPosition(SqlView):
    """Only a tracking position."""

    name = "auto_reply"
    tables = ()


class AutoReplyPolicy(LedgerProjection[PolicyPosition]):
    """Decides the automated reply to each message as it is stored."""

    name = "auto_reply"
    rebuildable: ClassVar[bool] = False

    def __init__(
        self, view: PolicyPosition, writer: LedgerWriter, auto_replies: AutoReplies
    ) -> None:
        super().__init__(view)
        self._writer = writer
        self._auto_replies = auto_replies

    def act(self, items: Sequence[tuple[Any, int]]) -> None:
        for event, position in items:
            topic = type(event).TOPIC
            if topic == MESSAGE_ECHOED:
                command: Command[Any] = echo_command(event)
            elif topic in TRIGGER_TOPICS:
                command = self._auto_replies.command_for(event)
            else:
                continue
            try:
                self._writer.run_now(command)
            except StorageUnavailable:
                raise  # the batch runs again later
            except Exception:
                log.exception("no auto-reply decision for the event at %d", position)
