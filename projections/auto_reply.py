"""The auto-reply policy: follows the log and records a decision on each inbound message
(with the participant's profile when it is due) and on each comment (a private reply,
`application/comment_replies.py`), and pauses automation when a person answers from the
Instagram app.

It keeps no rows, only its position: each decision is a command on the ledger (an event on
the conversation), keyed by the message, so running one again after a crash changes
nothing. It is not rebuilt from zero: that would answer messages of the past.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from application.auto_reply import TRIGGER_TOPICS, AutoReplies, echo_command
from application.comment_replies import TRIGGER_TOPICS as COMMENT_TOPICS
from application.comment_replies import CommentReplies
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
        self,
        view: PolicyPosition,
        writer: LedgerWriter,
        auto_replies: AutoReplies,
        comment_replies: CommentReplies | None = None,
    ) -> None:
        super().__init__(view)
        self._writer = writer
        self._auto_replies = auto_replies
        self._comment_replies = comment_replies or CommentReplies(
            auto_replies.ledger, auto_replies.clock
        )

    def act(self, items: Sequence[tuple[Any, int]]) -> None:
        # The batch's decisions are committed together (and with the webhooks waiting in
        # the writer), not one transaction each.
        for event, _ in items:
            self._auto_replies.observe(event)
        relevant = [
            (e, p)
            for e, p in items
            if (
                type(e).TOPIC in TRIGGER_TOPICS
                or type(e).TOPIC in COMMENT_TOPICS
                or type(e).TOPIC == MESSAGE_ECHOED
            )
            # History read back from Meta (a backfill) is not answered, nor taken for a
            # person answering from the app.
            and not getattr(e, "backfilled", False)
        ]
        if not relevant:
            return
        decisions = iter(
            self._auto_replies.commands_for(
                [e for e, _ in relevant if type(e).TOPIC in TRIGGER_TOPICS]
            )
        )
        commands: list[Command[Any]] = [
            echo_command(e)
            if type(e).TOPIC == MESSAGE_ECHOED
            else self._comment_replies.command_for(e)
            if type(e).TOPIC in COMMENT_TOPICS
            else next(decisions)
            for e, _ in relevant
        ]
        futures = self._writer.run_all(commands)
        unavailable: BaseException | None = None
        for (_, position), future in zip(relevant, futures, strict=True):
            error = future.exception()
            if isinstance(error, StorageUnavailable):
                unavailable = error
            elif error is not None:
                log.error("no auto-reply decision for the event at %d", position, exc_info=error)
        if unavailable is not None:
            raise unavailable  # the batch runs again later; its decisions are idempotent
