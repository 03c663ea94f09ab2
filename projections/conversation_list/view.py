"""The conversation list's table and its queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    select,
)

from projections.schema import metadata
from projections.view import SqlView

conversations = Table(
    "conversation_list",
    metadata,
    Column("conversation_id", String(36), primary_key=True),
    Column("ig_account_id", String(32), nullable=False),
    Column("participant_id", String(64), nullable=False),
    Column("participant_username", String(64)),
    Column("status", String(16), nullable=False),
    Column("last_message_preview", String(200)),
    Column("last_message_direction", String(16)),
    Column("last_message_at", BigInteger),
    Column("last_inbound_at", BigInteger),
    Column("unread_count", Integer, nullable=False),
    Column("automation_paused", Boolean, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_position", BigInteger, nullable=False),
    Index("conversation_list_by_account", "ig_account_id", "updated_position"),
)
"""One row a conversation. Times are milliseconds since the epoch: `*_message_at` and
`last_inbound_at` are Meta's, `started_at` and `updated_at` are when dmledger recorded it;
`updated_position` is the log position of the last change (the list's order)."""


class ConversationListView(SqlView):
    """Each account's conversations, most recently changed first."""

    name = "conversation_list"
    tables = (conversations,)

    def page(
        self,
        ig_account_id: str,
        *,
        limit: int,
        before_position: int | None = None,
        status: str | None = None,
        updated_since_ms: int | None = None,
        unread: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Up to `limit` conversations changed before `before_position`, newest first."""
        c = conversations.c
        query = select(conversations).where(c.ig_account_id == ig_account_id)
        if before_position is not None:
            query = query.where(c.updated_position < before_position)
        if status is not None:
            query = query.where(c.status == status)
        if updated_since_ms is not None:
            query = query.where(c.updated_at >= updated_since_ms)
        if unread is True:
            query = query.where(c.unread_count > 0)
        elif unread is False:
            query = query.where(c.unread_count == 0)
        query = query.order_by(c.updated_position.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def get(self, ig_account_id: str, conversation_id: str) -> dict[str, Any] | None:
        c = conversations.c
        query = select(conversations).where(
            c.ig_account_id == ig_account_id, c.conversation_id == conversation_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None
