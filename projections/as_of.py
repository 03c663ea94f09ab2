"""A conversation as it was at some version, folded from its events by the projections' own code.

The conversation list and message history handlers are applied to a batch held in
memory, so "the conversation as of then" is exactly what those read models would have
shown after that event, with nothing written anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Connection

from projections.conversation_list.projection import ConversationList
from projections.conversation_list.view import ConversationListView, conversations, profiles
from projections.message_history.projection import MessageHistory
from projections.message_history.view import MessageHistoryView, messages
from projections.view import Batch, Key, Row


class MemoryBatch(Batch):
    """A batch over no database: rows it has not been given do not exist."""

    def __init__(self) -> None:
        super().__init__(cast(Connection, None))

    def preload(self, table: Any, keys: Iterable[Key]) -> None:
        for key in keys:
            self._rows.setdefault((table.name, key), None)
        self._tables[table.name] = table

    def load(self, table: Any, *conditions: Any) -> list[Row]:
        """Nothing is stored: only the rows this batch holds (its caller filters them)."""
        return []

    def rows(self, table: Any) -> list[Row]:
        return [
            row for (name, _), row in self._rows.items() if name == table.name and row is not None
        ]


def conversation_as_of(events: Iterable[Any]) -> tuple[Row | None, list[Row]]:
    """The conversation-list row and the shown message rows after `events` (one conversation's,
    in order). Rows carry the event's version where the read models keep a log position."""
    batch = MemoryBatch()
    # The views are never asked for anything: the handlers only use the batch.
    projections = (
        ConversationList(cast(ConversationListView, None)),
        MessageHistory(cast(MessageHistoryView, None)),
    )
    items = [(event, event.originator_version) for event in events]
    for projection in projections:
        projection.preload(batch, items)
        projection.project(batch, items)
    listed = batch.rows(conversations)
    # the participant's profile beside the row, as the list's queries join it
    profile = next(iter(batch.rows(profiles)), {})
    shown = [row for row in batch.rows(messages) if row["kind"] is not None]
    shown.sort(key=lambda row: (row["sent_at"], row["position"]))
    return ({**listed[0], **profile} if listed else None), shown
