"""The `Media` aggregate: one post, reel, story or live of an account, and its comments.

Meta's `comments` and `live_comments` webhooks each carry one comment; each is an event
here, recorded once however often Meta delivers it (keyed by the comment's id). A
comment's text is the commenter's content, sealed like a message's (`domain.content`),
under the data key of the commenter's conversation with the account, so that erasing
that participant erases their comments too.

The private reply to a comment is claimed here (`claim_private_reply`): Meta takes one
private reply per comment, so the claim is made once, by the aggregate, whatever runs
the decision twice. The reply itself is queued on the conversation with the commenter.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.identity import media_id

JSONObject = dict[str, Any]

# The stored topic of each media event: part of the stored schema, never to change.
STARTED = "dmledger:Media.Started"
COMMENT_RECEIVED = "dmledger:Media.CommentReceived"
COMMENT_EDITED = "dmledger:Media.CommentEdited"
COMMENT_REMOVED = "dmledger:Media.CommentRemoved"
PRIVATE_REPLY_CLAIMED = "dmledger:Media.PrivateReplyClaimed"
COMMENT_REPLY_SKIPPED = "dmledger:Media.CommentReplySkipped"

DAY_MS = 24 * 3_600_000
PRIVATE_REPLY_DAYS = 7
"""Meta takes a private reply within 7 days of the comment."""
LIVE_BROADCAST_MS = 4 * 3_600_000
"""A private reply to a live comment goes only while the broadcast lasts. The webhook does
not say when it ends; Meta caps a live broadcast at 4 hours, so no broadcast outlasts
this after one of its comments."""


def private_reply_deadline(commented_at: int, *, live: bool) -> int:
    """Until when (ms) Meta takes a private reply to a comment made at `commented_at`."""
    return commented_at + (LIVE_BROADCAST_MS if live else PRIVATE_REPLY_DAYS * DAY_MS)


class Media(Aggregate):
    """One media of an Instagram account and what its commenters wrote."""

    TOPIC = "dmledger:Media"

    class Event(Aggregate.Event):
        """Base of every media event."""

        TOPIC = "dmledger:Media.Event"

    class Created(Event, Aggregate.Created):
        """Base of the media's creation event."""

        TOPIC = "dmledger:Media.Created"

    @staticmethod
    def create_id(ig_account_id: str, media: str, **_: Any) -> UUID:
        """A media is identified by its account and Meta's media id."""
        return media_id(ig_account_id, media)

    @event("Started", topic=STARTED)
    def __init__(self, ig_account_id: str, media: str, product_type: str | None) -> None:
        self.ig_account_id = ig_account_id
        self.media = media
        self.product_type = product_type
        self.comments: dict[str, dict[str, Any]] = {}
        """By comment id: `author_id`, `commented_at` (ms), `live`, `removed`."""
        self.private_replies: dict[str, str] = {}
        """Comment id -> the id of the private reply claimed for it (one per comment)."""
        self.decided: dict[str, None] = {}
        """Comment ids whose automation decision is recorded (claimed or skipped)."""
        self.replied_authors: dict[str, str] = {}
        """Commenter id -> the comment whose private reply they got: a person who comments
        twice on one media gets one private message, not one a comment."""

    def receive_comment(
        self,
        *,
        comment_id: str,
        text: str | None,
        author_id: str,
        author_username: str | None,
        parent_id: str | None,
        product_type: str | None,
        live: bool,
        commented_at: int,
        extra: JSONObject | None = None,
    ) -> bool:
        """Record a comment (or a live comment); False if it is already recorded."""
        if comment_id in self.comments:
            return False
        self._comment_received(
            comment_id=comment_id,
            ig_account_id=self.ig_account_id,
            media=self.media,
            text=text,
            author_id=author_id,
            author_username=author_username,
            parent_id=parent_id,
            product_type=product_type,
            live=live,
            commented_at=commented_at,
            extra=extra or {},
        )
        return True

    @event("CommentReceived", topic=COMMENT_RECEIVED)
    def _comment_received(
        self,
        comment_id: str,
        ig_account_id: str,
        media: str,
        text: str | None,
        author_id: str,
        author_username: str | None,
        parent_id: str | None,
        product_type: str | None,
        live: bool,
        commented_at: int,
        extra: JSONObject,
    ) -> None:
        self.comments[comment_id] = {
            "author_id": author_id,
            "commented_at": commented_at,
            "live": live,
            "removed": False,
        }
        if product_type and not self.product_type:
            self.product_type = product_type

    def edit_comment(self, *, comment_id: str, text: str | None, edited_at: int) -> bool:
        """Record a comment's new text (Meta's `verb: edited`); False for an unknown comment
        or a repeat of the same edit."""
        comment = self.comments.get(comment_id)
        if comment is None or comment["removed"]:
            return False
        if comment.get("edited_at") is not None and comment["edited_at"] >= edited_at:
            return False
        self._comment_edited(
            comment_id=comment_id,
            ig_account_id=self.ig_account_id,
            author_id=comment["author_id"],
            text=text,
            edited_at=edited_at,
        )
        return True

    @event("CommentEdited", topic=COMMENT_EDITED)
    def _comment_edited(
        self, comment_id: str, ig_account_id: str, author_id: str, text: str | None, edited_at: int
    ) -> None:
        self.comments[comment_id] = {**self.comments[comment_id], "edited_at": edited_at}

    def remove_comment(self, *, comment_id: str, removed_at: int) -> bool:
        """Record that a comment was deleted (Meta's `verb: remove`): its content (and its
        edits') is destroyed with this event. False if unknown or already removed."""
        comment = self.comments.get(comment_id)
        if comment is None or comment["removed"]:
            return False
        self._comment_removed(
            comment_id=comment_id,
            ig_account_id=self.ig_account_id,
            author_id=comment["author_id"],
            removed_at=removed_at,
        )
        return True

    @event("CommentRemoved", topic=COMMENT_REMOVED)
    def _comment_removed(
        self, comment_id: str, ig_account_id: str, author_id: str, removed_at: int
    ) -> None:
        self.comments[comment_id] = {**self.comments[comment_id], "removed": True}

    # -- the private reply, once per comment --------------------------------------------

    def private_reply_refusal(self, comment_id: str, now: int) -> str | None:
        """Why Meta would not take a private reply to this comment now, or None."""
        comment = self.comments.get(comment_id)
        if comment is None:
            return "unknown_comment"
        if comment["removed"]:
            return "comment_removed"
        if comment_id in self.private_replies:
            return "already_replied"
        if comment["author_id"] in self.replied_authors:
            return "commenter_already_replied"
        if not comment["commented_at"]:
            return "comment_time_unknown"  # Meta's webhook had no `time` to count 7 days from
        deadline = private_reply_deadline(comment["commented_at"], live=comment["live"])
        if now > deadline:
            return "broadcast_over" if comment["live"] else "comment_too_old"
        return None

    def claim_private_reply(
        self, *, comment_id: str, reply_id: str, rule_id: str | None, now: int
    ) -> bool:
        """Claim the one private reply Meta takes for this comment; False (nothing
        recorded) if Meta would refuse it (`private_reply_refusal`)."""
        if self.private_reply_refusal(comment_id, now) is not None:
            return False
        comment = self.comments[comment_id]
        self._private_reply_claimed(
            comment_id=comment_id,
            reply_id=reply_id,
            author_id=comment["author_id"],
            rule_id=rule_id,
            claimed_at=now,
        )
        return True

    @event("PrivateReplyClaimed", topic=PRIVATE_REPLY_CLAIMED)
    def _private_reply_claimed(
        self, comment_id: str, reply_id: str, author_id: str, rule_id: str | None, claimed_at: int
    ) -> None:
        self.private_replies[comment_id] = reply_id
        self.replied_authors[author_id] = comment_id
        self.decided[comment_id] = None

    def skip_comment_reply(self, *, comment_id: str, rule_id: str | None, reason: str) -> bool:
        """Record why automation did not answer a comment a rule matched; once a comment."""
        if comment_id in self.decided:
            return False
        self._comment_reply_skipped(comment_id=comment_id, rule_id=rule_id, reason=reason)
        return True

    @event("CommentReplySkipped", topic=COMMENT_REPLY_SKIPPED)
    def _comment_reply_skipped(self, comment_id: str, rule_id: str | None, reason: str) -> None:
        self.decided[comment_id] = None
