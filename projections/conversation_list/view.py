"""The conversation list's table and its queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    select,
)

from application.storable import ID_LENGTH, USERNAME_LENGTH
from projections.schema import metadata
from projections.view import SqlView

conversations = Table(
    "conversation_list",
    metadata,
    Column("conversation_id", String(36), primary_key=True),
    Column("ig_account_id", String(32), nullable=False),
    Column("participant_id", String(ID_LENGTH), nullable=False),
    Column("participant_username", String(USERNAME_LENGTH)),
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


profiles = Table(
    "conversation_list_profiles",
    metadata,
    Column("conversation_id", String(36), primary_key=True),
    Column("participant_name", Text),
    Column("participant_profile_picture_url", Text),
    Column("participant_follower_count", BigInteger),
    Column("participant_follows_business", Boolean),
    Column("participant_verified", Boolean),
    Column("profile_looked_up_at", BigInteger),
    Column("profile_recorded_at", BigInteger),
)
"""What Meta's user profile API last said of each conversation's participant (the username
is the list's own column); a conversation without a profile has no row. Its content goes
with the participant's erasure, or with the account's retention (`profile_recorded_at`:
when its event was recorded, ms)."""

PROFILE_CONTENT = (
    "participant_name",
    "participant_profile_picture_url",
    "participant_follower_count",
    "participant_follows_business",
    "participant_verified",
)
"""The profile's columns that are the participant's content."""

_PROFILE_COLUMNS = [
    c for c in profiles.c if c.name not in ("conversation_id", "profile_recorded_at")
]


class ConversationListView(SqlView):
    """Each account's conversations, most recently changed first."""

    name = "conversation_list"
    version = 2  # 2: profiles and our replies are erased with the participant
    tables = (conversations, profiles)

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
        query = _with_profiles().where(c.ig_account_id == ig_account_id)
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
        query = _with_profiles().where(
            c.ig_account_id == ig_account_id, c.conversation_id == conversation_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None


def _with_profiles() -> Select[Any]:
    """Conversations with their participant's profile columns (null while unknown)."""
    joined = conversations.outerjoin(
        profiles, profiles.c.conversation_id == conversations.c.conversation_id
    )
    return select(conversations, *_PROFILE_COLUMNS).select_from(joined)
