"""How media events (and the erasure of a commenter) change the comments' list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain import account as account_topics
from domain import conversation as conversation_topics
from domain import media as topics
from domain.content import is_erased
from domain.identity import conversation_id
from projections.comments.view import CommentsView, comments
from projections.projection import LedgerProjection, id_text, on
from projections.view import Batch, Row

_OF_A_COMMENT = (
    topics.COMMENT_RECEIVED,
    topics.COMMENT_EDITED,
    topics.COMMENT_REMOVED,
    topics.PRIVATE_REPLY_CLAIMED,
    topics.COMMENT_REPLY_SKIPPED,
)


def _forget(row: Row) -> None:
    """A comment without its content: as a rebuild reads it once its key is gone."""
    row["text"] = None
    row["erased"] = True


class Comments(LedgerProjection[CommentsView]):
    """Keeps `media_comments` in step with the media's events."""

    name = "comments"

    def preload(self, batch: Batch, items: Sequence[tuple[Any, int]]) -> None:
        keys = {
            (id_text(event.originator_id), event.comment_id)
            for event, _ in items
            if type(event).TOPIC in _OF_A_COMMENT
        }
        batch.preload(comments, keys)

    def _comment(self, batch: Batch, event: Any) -> Row | None:
        row = batch.get(comments, (id_text(event.originator_id), event.comment_id))
        if row is not None:
            batch.changed(comments, row)
        return row

    @on(topics.COMMENT_RECEIVED)
    def comment_received(self, batch: Batch, event: Any, position: int) -> None:
        row = batch.put(
            comments,
            {
                "media_key": id_text(event.originator_id),
                "comment_id": event.comment_id,
                "ig_account_id": event.ig_account_id,
                "media_id": event.media,
                "media_product_type": event.product_type,
                "parent_id": event.parent_id,
                "text": event.text,
                "author_id": event.author_id,
                "author_username": event.author_username,
                "author_conversation_id": id_text(
                    conversation_id(event.ig_account_id, event.author_id)
                ),
                "live": event.live,
                "commented_at": event.commented_at,
                "edited_at": None,
                "removed": False,
                "erased": False,
                "private_reply_id": None,
                "private_reply_conversation_id": None,
                "skipped_reason": None,
                "position": position,
            },
        )
        if is_erased(event):
            _forget(row)

    @on(topics.COMMENT_EDITED)
    def comment_edited(self, batch: Batch, event: Any, position: int) -> None:
        row = self._comment(batch, event)
        if row is None or row["removed"] or row["erased"]:
            return
        if row["edited_at"] is None or event.edited_at >= row["edited_at"]:
            row["edited_at"] = event.edited_at
            row["text"] = None if is_erased(event) else event.text

    @on(topics.COMMENT_REMOVED)
    def comment_removed(self, batch: Batch, event: Any, position: int) -> None:
        row = self._comment(batch, event)
        if row is not None:
            row["removed"] = True
            _forget(row)  # its data key went with this event

    @on(topics.PRIVATE_REPLY_CLAIMED)
    def private_reply_claimed(self, batch: Batch, event: Any, position: int) -> None:
        row = self._comment(batch, event)
        if row is not None:
            row["private_reply_id"] = event.reply_id
            row["private_reply_conversation_id"] = row["author_conversation_id"]

    @on(topics.COMMENT_REPLY_SKIPPED)
    def comment_reply_skipped(self, batch: Batch, event: Any, position: int) -> None:
        row = self._comment(batch, event)
        if row is not None:
            row["skipped_reason"] = event.reason

    @on(conversation_topics.PARTICIPANT_ERASED)
    def participant_erased(self, batch: Batch, event: Any, position: int) -> None:
        self._forget_authors(batch, [id_text(event.originator_id)], before=None)

    @on(account_topics.CONTENT_EXPIRED)
    def content_expired(self, batch: Batch, event: Any, position: int) -> None:
        self._forget_authors(batch, event.conversation_ids, before=event.before)

    def _forget_authors(self, batch: Batch, authors: Sequence[str], before: int | None) -> None:
        """Forget the comments of these commenters' conversations (made before `before`:
        Meta's time of a comment stands for when its key was recorded)."""
        wanted = set(authors)
        found: dict[int, Row] = {}
        ids = sorted(wanted)
        for start in range(0, len(ids), 500):
            column = comments.c.author_conversation_id
            for row in batch.load(comments, column.in_(ids[start : start + 500])):
                found[id(row)] = row
        found.update({id(r): r for r in batch.in_memory(comments)})
        for row in found.values():
            if (
                row["author_conversation_id"] in wanted
                and not row["erased"]
                and (before is None or row["commented_at"] < before)
            ):
                _forget(row)
                batch.changed(comments, row)
