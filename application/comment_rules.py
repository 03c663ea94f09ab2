"""Matching a comment against the rules' comment triggers (`comment`, `live_comment`).

A comment trigger answers a comment on its `media_id` (or on any media of the account
when it names none) whose text holds its keyword as whole words (`value`; none answers
every comment). A `comment` trigger answers comments on posts and reels, a
`live_comment` one comments during a live broadcast. Rules are tried in the order DM
rules are (priority, then age); the first enabled one with a matching trigger answers.
Pure: the decision (`application.comment_replies`) and its tests agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from application.rules import COMMENT_TRIGGERS, ordered_rules, words


@dataclass(frozen=True)
class CommentInbound:
    """What a comment trigger is matched against."""

    text: str | None
    media_id: str
    live: bool


@dataclass(frozen=True)
class CommentMatch:
    """The rule that answers a comment: its private reply, and its public one if any."""

    rule_id: str
    rule_version: int
    name: str
    private_reply: str
    public_reply: str | None


def comment_trigger_matches(trigger: dict[str, Any], comment: CommentInbound) -> bool:
    """Whether one trigger answers this comment."""
    kind = trigger.get("type")
    if kind not in COMMENT_TRIGGERS or (kind == "live_comment") != comment.live:
        return False
    media = trigger.get("media_id")
    if media and media != comment.media_id:
        return False
    keyword = words(trigger.get("value") or "")
    if not keyword:
        return True
    if comment.text is None:
        return False
    found = words(comment.text)
    width = len(keyword)
    return any(found[i : i + width] == keyword for i in range(len(found) - width + 1))


def choose_for_comment(
    rules: dict[str, dict[str, Any]], comment: CommentInbound
) -> CommentMatch | None:
    """The enabled rule that answers this comment, or None."""
    for rule_id, rule in ordered_rules(rules):
        if not rule["enabled"]:
            continue
        if any(comment_trigger_matches(t, comment) for t in rule["triggers"]):
            return CommentMatch(
                rule_id=rule_id,
                rule_version=rule["version"],
                name=rule["name"],
                private_reply=rule["reply"],
                public_reply=rule.get("public_reply"),
            )
    return None
