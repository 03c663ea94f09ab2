"""The comment-to-DM decision: on each comment, which rule answers it with a private reply.

A private reply is one message to the commenter (Meta's `recipient: {comment_id}`). It
is claimed on the media first (`Media.claim_private_reply`: one per comment, one per
commenter and media, only within 7 days of the comment or while a live broadcast lasts),
then queued on the conversation with the commenter, started here if they never wrote:
it is that conversation's message, linked to the comment. Both happen in one command,
so either both are stored or neither. A decision not to answer a matched comment is
recorded (`CommentReplySkipped`) with its reason.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid5

from application.comment_rules import CommentInbound, choose_for_comment
from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from application.ports import Clock
from application.rules import render
from domain import media as media_topics
from domain.account import Account
from domain.conversation import Conversation, Status
from domain.identity import account_id, conversation_id
from domain.media import Media, private_reply_deadline

TRIGGER_TOPICS = (media_topics.COMMENT_RECEIVED,)


class CommentReplies:
    """Decides the private reply to each comment, one comment at a time."""

    def __init__(self, ledger: Ledger, clock: Clock) -> None:
        self.ledger = ledger
        self.clock = clock

    def command_for(self, event: Any) -> Command[str | None]:
        """The command that records the decision on a `CommentReceived`; it returns what
        was decided (None: no rule answers it, or it was decided before)."""
        decided_at = self.clock.now_ms()

        def decide(changes: Changes) -> str | None:
            media = changes.get(event.originator_id, Media)
            if media is None or event.comment_id in media.decided:
                return None
            account = changes.get(account_id(media.ig_account_id), Account, fresh=True)
            if account is None:
                return None
            return _decide(self.ledger, changes, account, media, event, decided_at)

        return decide


def _decide(
    ledger: Ledger, changes: Changes, account: Account, media: Media, event: Any, now: int
) -> str | None:
    if event.author_id in ("", account.ig_account_id):
        return None  # the account's own comments (its replies to others) get no DM
    match = choose_for_comment(
        account.rules, CommentInbound(text=event.text, media_id=media.media, live=event.live)
    )
    if match is None:
        return None
    conversation = changes.get(
        conversation_id(account.ig_account_id, event.author_id), Conversation
    )
    reason = _reason_not_to_reply(account, media, conversation, event.comment_id, now)
    if reason is not None:
        media.skip_comment_reply(comment_id=event.comment_id, rule_id=match.rule_id, reason=reason)
        return reason
    if conversation is None:
        conversation = Conversation(
            ig_account_id=account.ig_account_id, participant_id=event.author_id
        )
        changes.add(conversation)
    key = f"private-reply:{event.comment_id}"
    reply_id = str(uuid5(media.id, key))
    profile = {"username": event.author_username, **ledger.participant_profile(conversation)}
    public = match.public_reply
    media.claim_private_reply(
        comment_id=event.comment_id, reply_id=reply_id, rule_id=match.rule_id, now=now
    )
    conversation.queue_reply(
        reply_id=reply_id,
        text=render(match.private_reply, profile=profile, account_username=account.username),
        key=key,
        automated=True,
        in_reply_to=None,
        rule_id=match.rule_id,
        rule_version=match.rule_version,
        trigger_at=event.commented_at,
        by="rule",
        comment={
            "comment_id": event.comment_id,
            "media_id": media.media,
            "live": event.live,
            "deadline": private_reply_deadline(event.commented_at, live=event.live),
        },
        public_reply=render(public, profile=profile, account_username=account.username)
        if public
        else None,
    )
    return "queued"


def _reason_not_to_reply(
    account: Account,
    media: Media,
    conversation: Conversation | None,
    comment_id: str,
    now: int,
) -> str | None:
    if not account.automates:
        return "account_suspended"
    if not account.settings.get("auto_reply", True):
        return "auto_reply_off"
    refusal = media.private_reply_refusal(comment_id, now)
    if refusal is not None:
        return refusal
    if conversation is None:
        return None
    if conversation.status == Status.BLOCKED:
        return "conversation_blocked"
    if conversation.automation_paused_at is not None:
        return "automation_paused"
    if conversation.owned_by_another_app(
        primary_receiver=account.settings.get("primary_receiver", True)
    ):
        return "thread_owned_by_another_app"
    return None
