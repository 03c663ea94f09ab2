"""`/api/v1/accounts/{account_id}/media/{media_id}/comments`: the comments on a media."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from msgspec import Meta

from interfaces.http import cursors
from interfaces.http.openapi import problems
from projections.registry import ReadModels

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="At most this many comments.")]
Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of a previous page.")]


class Commenter(msgspec.Struct):
    """Who wrote a comment."""

    id: Annotated[str, Meta(description="The commenter's Instagram-scoped id (IGSID).")]
    username: str | None
    conversation_id: Annotated[
        str,
        Meta(
            description="The conversation with the commenter (it exists once they "
            "wrote, or got a private reply)."
        ),
    ]


class Comment(msgspec.Struct):
    """One comment on the media, as Meta's `comments` or `live_comments` webhook told."""

    id: str
    media_id: str
    media_product_type: str | None
    parent_id: Annotated[str | None, Meta(description="The comment this one answers.")]
    text: Annotated[str | None, Meta(description="Null once deleted or erased.")]
    author: Commenter
    live: bool
    commented_at: Annotated[datetime, Meta(description="When Meta sent its webhook.")]
    edited_at: datetime | None
    removed: bool
    erased: bool
    private_reply_id: Annotated[
        str | None,
        Meta(
            description="The private reply sent to the commenter for it (a reply of "
            "`author.conversation_id`), if a rule answered it."
        ),
    ]
    skipped_reason: Annotated[
        str | None,
        Meta(
            description="Why a rule that matched it did not answer it (comment_too_old, "
            "commenter_already_replied, thread_owned_by_another_app, ...)."
        ),
    ]

    @classmethod
    def of(cls, row: dict[str, Any]) -> "Comment":
        return cls(
            id=row["comment_id"],
            media_id=row["media_id"],
            media_product_type=row["media_product_type"],
            parent_id=row["parent_id"],
            text=row["text"],
            author=Commenter(
                id=row["author_id"],
                username=row["author_username"],
                conversation_id=row["author_conversation_id"],
            ),
            live=row["live"],
            commented_at=_time(row["commented_at"]),
            edited_at=_time(row["edited_at"]) if row["edited_at"] is not None else None,
            removed=row["removed"],
            erased=row["erased"],
            private_reply_id=row["private_reply_id"],
            skipped_reason=row["skipped_reason"],
        )


class CommentPage(msgspec.Struct):
    """Comments, newest first."""

    comments: list[Comment]
    next_cursor: str | None


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class MediaController(Controller):
    """An account's media, as far as their comments tell."""

    path = "/api/v1/accounts/{account_id:str}/media"
    tags = ["comments"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("/{media_id:str}/comments", responses=problems(401, 404, 422))
    async def list_comments(
        self,
        account: NamedDependency[str],
        media_id: FromPath[str],
        read_models: NamedDependency[ReadModels],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> CommentPage:
        """List the comments on one of the account's media (Meta's media id), newest first."""
        before = cursors.decode(cursor, fields=("p",))["p"] if cursor else None
        rows = await asyncio.to_thread(
            read_models.comments.page,
            account,
            media_id,
            limit=limit + 1,
            before_position=before,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursors.encode({"p": rows[-1]["position"]}) if more else None
        return CommentPage([Comment.of(r) for r in rows], next_cursor)
