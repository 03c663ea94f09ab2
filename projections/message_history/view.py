"""The message history's table and its queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
)

from application.storable import MID_LENGTH
from projections.previews import KIND_LENGTH
from projections.schema import metadata
from projections.view import SqlView

messages = Table(
    "message_history",
    metadata,
    Column("conversation_id", String(36), primary_key=True),
    Column("message_key", String(MID_LENGTH), primary_key=True),
    Column("mid", String(MID_LENGTH)),
    Column("direction", String(16)),
    Column("kind", String(KIND_LENGTH)),
    Column("text", Text),
    Column("attachments", JSON, nullable=False),
    Column("reply_to", JSON),
    Column("quick_reply", JSON),
    Column("referral", JSON),
    Column("reactions", JSON, nullable=False),
    Column("edit_count", Integer, nullable=False),
    Column("edited_at", BigInteger),
    Column("unsent", Boolean, nullable=False),
    Column("unsent_at", BigInteger),
    Column("standby", Boolean, nullable=False),
    Column("delivery_status", String(16)),
    Column("delivery_error", JSON),
    Column("reply_id", String(64)),
    Column("sent_at", BigInteger),
    Column("recorded_at", BigInteger),
    Column("position", BigInteger),
    Index("message_history_in_order", "conversation_id", "sent_at", "position"),
    Index("message_history_replies", "conversation_id", "reply_id"),
)
"""One row a message, keyed by Meta's `mid`. A row whose `kind` is null holds an edit,
unsend or reaction that arrived before its message (Meta does not promise order) and is
not shown until the message comes. Times are milliseconds since the epoch. A private
reply's `reply_to` is `{"comment": {"comment_id", "media_id"}}`: the comment it answers."""


class MessageHistoryView(SqlView):
    """Messages in the order they were sent (Meta's time, then log position)."""

    name = "message_history"
    version = 2  # 2: our replies are erased with the participant
    tables = (messages,)

    def reply(self, conversation_id: str, reply_id: str) -> dict[str, Any] | None:
        """The row of one of our replies."""
        m = messages.c
        query = select(messages).where(m.conversation_id == conversation_id, m.reply_id == reply_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def page(
        self,
        conversation_id: str,
        *,
        limit: int,
        after: tuple[int, int] | None = None,
        before: tuple[int, int] | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Up to `limit` messages strictly after or before an (sent_at, position) place."""
        m = messages.c
        query = select(messages).where(m.conversation_id == conversation_id, m.kind.is_not(None))
        if after is not None:
            query = query.where(
                or_(m.sent_at > after[0], and_(m.sent_at == after[0], m.position > after[1]))
            )
        if before is not None:
            query = query.where(
                or_(m.sent_at < before[0], and_(m.sent_at == before[0], m.position < before[1]))
            )
        if newest_first:
            query = query.order_by(m.sent_at.desc(), m.position.desc())
        else:
            query = query.order_by(m.sent_at.asc(), m.position.asc())
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query.limit(limit)).mappings()]
