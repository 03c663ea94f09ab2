"""The comments' table and its query."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Table, Text, select

from application.storable import ID_LENGTH, NAME_LENGTH
from projections.schema import metadata
from projections.view import SqlView

comments = Table(
    "media_comments",
    metadata,
    Column("media_key", String(36), primary_key=True),
    Column("comment_id", String(ID_LENGTH), primary_key=True),
    Column("ig_account_id", String(32), nullable=False),
    Column("media_id", String(ID_LENGTH), nullable=False),
    Column("media_product_type", String(NAME_LENGTH)),
    Column("parent_id", String(ID_LENGTH)),
    Column("text", Text),
    Column("author_id", String(ID_LENGTH), nullable=False),
    Column("author_username", Text),
    Column("author_conversation_id", String(36), nullable=False),
    Column("live", Boolean, nullable=False),
    Column("commented_at", BigInteger, nullable=False),
    Column("edited_at", BigInteger),
    Column("removed", Boolean, nullable=False),
    Column("erased", Boolean, nullable=False),
    Column("private_reply_id", String(64)),
    Column("private_reply_conversation_id", String(36)),
    Column("skipped_reason", String(64)),
    Column("position", BigInteger, nullable=False),
    Index("media_comments_in_order", "ig_account_id", "media_id", "position"),
    Index("media_comments_by_author", "author_conversation_id"),
)
"""One row a comment; `media_key` is the `Media` aggregate's id. `author_conversation_id`
is the conversation with the commenter (whose erasure erases their comments)."""


class CommentsView(SqlView):
    """Each media's comments, newest first."""

    name = "comments"
    tables = (comments,)

    def page(
        self,
        ig_account_id: str,
        media_id: str,
        *,
        limit: int,
        before_position: int | None = None,
    ) -> list[dict[str, Any]]:
        """Up to `limit` comments of a media recorded before `before_position`, newest first."""
        c = comments.c
        query = select(comments).where(c.ig_account_id == ig_account_id, c.media_id == media_id)
        if before_position is not None:
            query = query.where(c.position < before_position)
        query = query.order_by(c.position.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]
