"""Reading Meta's `comments` and `live_comments` webhooks: `entry[].changes[]` items.

A comment change names its account in `entry[].id` (the Instagram professional account
the media belongs to) and carries, in `value`, the comment's `id`, `text`, `from`
(`id`: the commenter's Instagram-scoped id, `username`), `media` (`id`,
`media_product_type`, and `ad_id`/`ad_title` on an ad), and `parent_id` on a reply to
another comment. Meta's comment webhooks carry no time: `entry[].time` (the time Meta
sent it, seconds or milliseconds) stands for it. Instagram sends no edit or deletion of
a comment today; a `verb` of `edited` or `remove` (the shape of Meta's Page feed
webhooks) is recorded as one should it come.

Other fields of `changes[]` (the dashboard's test events among them) are not comments
and are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from application.errors import MalformedWebhook
from application.storable import ID_LENGTH, LATEST_MS, NAME_LENGTH, unstorable, without_nul
from domain.media import Media

JSONObject = dict[str, Any]

COMMENT_FIELDS = ("comments", "live_comments")
_VALUE_KEYS = {"id", "text", "from", "media", "parent_id", "verb"}


@dataclass(frozen=True)
class RoutedComment:
    """One comment change, with its account and media."""

    ig_account_id: str
    media: str
    value: JSONObject
    live: bool
    at: int
    """Meta's time of the notification, ms."""


def _ms(time: object) -> int:
    if isinstance(time, bool) or not isinstance(time, int) or time < 0:
        return 0
    # Comment notifications give seconds, messaging ones milliseconds.
    return time * 1000 if time < 100_000_000_000 else time


def _storable_time(time: object) -> bool:
    """A comment's time is its notification's; the read models keep it in 64 bits."""
    if isinstance(time, bool) or not isinstance(time, int):
        return True  # no time: the comment's is unknown (0)
    return time >= 0 and _ms(time) < LATEST_MS


def route_comments(entries: list[Any]) -> list[RoutedComment]:
    """Every comment change of the body, or `MalformedWebhook` naming the field of one
    that cannot be stored (before anything is stored)."""
    routed: list[RoutedComment] = []
    for e, entry in enumerate(entries):
        for c, change in enumerate(entry.changes):
            if not isinstance(change, dict) or change.get("field") not in COMMENT_FIELDS:
                continue
            path = f"entry[{e}].changes[{c}].value"
            value = change.get("value")
            if not isinstance(value, dict):
                raise MalformedWebhook(f"{path} must be a JSON object")
            if not _storable_time(entry.time):
                raise MalformedWebhook(
                    f"entry[{e}].time must be the time Meta sent it (seconds or milliseconds "
                    "since 1970, before the year 10000)"
                )
            without_nul(value)
            stored = unstorable(value, path)
            problem = f"{stored[0]} {stored[1]}" if stored else _problem(value, path)
            if problem is not None:
                raise MalformedWebhook(problem)
            routed.append(
                RoutedComment(
                    ig_account_id=str(entry.id),
                    media=str(value["media"]["id"]),
                    value=value,
                    live=change["field"] == "live_comments",
                    at=_ms(entry.time),
                )
            )
    return routed


def _problem(value: JSONObject, path: str) -> str | None:
    if not _is_id(value.get("id")):
        return f"{path}.id must be the comment's id"
    media = value.get("media")
    if not isinstance(media, dict) or not _is_id(media.get("id")):
        return f"{path}.media.id must be the media's id"
    author = value.get("from")
    if value.get("verb") not in ("edited", "remove") and (
        not isinstance(author, dict) or not _is_id(author.get("id"))
    ):
        return f"{path}.from.id must be the commenter's id"
    # Ids key the comments' rows; Meta's are ~17 digits, its product types short names.
    for field, found, longest in (
        ("id", value.get("id"), ID_LENGTH),
        ("media.id", media.get("id"), ID_LENGTH),
        ("from.id", author.get("id") if isinstance(author, dict) else None, ID_LENGTH),
        ("parent_id", value.get("parent_id"), ID_LENGTH),
        ("media.media_product_type", media.get("media_product_type"), NAME_LENGTH),
    ):
        if isinstance(found, str | int) and len(str(found)) > longest:
            return f"{path}.{field} must be at most {longest} characters"
    return None


def _is_id(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value) != ""


def record_comment(media: Media, routed: RoutedComment) -> bool:
    """Record one comment change on its media; False if it was already recorded."""
    value = routed.value
    comment_id = str(value["id"])
    verb = value.get("verb")
    if verb == "remove":
        return media.remove_comment(comment_id=comment_id, removed_at=routed.at)
    if verb == "edited" and comment_id in media.comments:
        return media.edit_comment(
            comment_id=comment_id, text=_str(value.get("text")), edited_at=routed.at
        )
    author = value.get("from") or {}
    media_object = value["media"]
    extra = {k: v for k, v in value.items() if k not in _VALUE_KEYS}
    extra.update({k: v for k, v in media_object.items() if k not in ("id", "media_product_type")})
    return media.receive_comment(
        comment_id=comment_id,
        text=_str(value.get("text")),
        author_id=str(author.get("id") or ""),
        author_username=_str(author.get("username")),
        parent_id=str(value["parent_id"]) if _is_id(value.get("parent_id")) else None,
        product_type=_str(media_object.get("media_product_type")),
        live=routed.live,
        commented_at=routed.at,
        extra=extra,
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
