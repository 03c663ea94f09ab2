"""What a reply can be, as the Instagram Send API takes it, and Meta's limits on each kind.

A reply is one of: a text (with up to 13 quick replies), an attachment (image, video,
audio or a PDF `file`) by URL or by a reusable attachment id, a generic template (a
carousel), a reaction to one of the participant's messages, or a sender action
(`typing_on`, `typing_off`, `mark_seen`). CRM replies (`application/replies.py`) and rules'
replies (`application/rules.py`) both become a `ReplyMessage`; `ReplyQueued` stores it as
its JSON shape (`message`), and the dispatcher turns it into Meta's request body
(`meta_fields`). `check` refuses what Meta would refuse, naming the field at fault.

Just over 300 lines: the kinds, their limits and their request body read best in one
place; each is a few lines.
"""

from __future__ import annotations

from typing import Any

import msgspec

from application.errors import InvalidInput

MAX_TEXT_BYTES = 1000
"""Meta's limit on a text message, in bytes of UTF-8."""
MAX_QUICK_REPLIES = 13
MAX_QUICK_REPLY_TITLE = 20
MAX_PAYLOAD = 1000
"""Quick replies' and postback buttons' payloads, in characters."""
MAX_ELEMENTS = 10
MAX_ELEMENT_TEXT = 80
"""A template element's title and subtitle, in characters."""
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_URL = 2000
MEDIA_TYPES = ("image", "video", "audio", "file")
SENDER_ACTIONS = ("typing_on", "typing_off", "mark_seen")
REACTIONS = ("love",)
"""The reactions the Instagram Send API takes (`payload.reaction`)."""
BUTTON_TYPES = ("web_url", "postback")
NOT_MESSAGES = ("reaction", *SENDER_ACTIONS)
"""The kinds of reply that are no message of the conversation (`kind_of`)."""
SLOW_MEDIA = ("audio", "video")
"""Attachments under Meta's lower per-account rate (10 a second)."""


class QuickReply(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A button under a text; tapping it sends its title, and `payload` to the webhook."""

    title: str
    payload: str
    content_type: str = "text"


class Button(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A template button: `web_url` opens `url`, `postback` sends `payload`."""

    type: str
    title: str
    url: str | None = None
    payload: str | None = None


class Element(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One card of a generic template."""

    title: str
    subtitle: str | None = None
    image_url: str | None = None
    buttons: list[Button] = msgspec.field(default_factory=list)


class GenericTemplate(msgspec.Struct, forbid_unknown_fields=True):
    """A carousel of up to 10 elements."""

    elements: list[Element]


class ReactionRequest(msgspec.Struct, forbid_unknown_fields=True):
    """React to one of the participant's messages (`reaction`), or take ours back
    (`remove`)."""

    message_id: str
    reaction: str | None = None
    remove: bool = False


class _Kind(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    pass


class TextReply(_Kind, tag="text"):
    text: str
    quick_replies: list[QuickReply] = msgspec.field(default_factory=list)


class AttachmentReply(_Kind, tag="attachment"):
    media_type: str
    url: str | None = None
    attachment_id: str | None = None
    reusable: bool = False
    """Upload the URL once (`/message_attachments`) and send its attachment id, now and
    whenever the account sends the same URL again."""


class TemplateReply(_Kind, tag="template"):
    elements: list[Element]


class ReactionReply(_Kind, tag="reaction"):
    message_id: str
    reaction: str | None = None
    """None: take our reaction back (`unreact`)."""


class SenderActionReply(_Kind, tag="sender_action"):
    action: str


ReplyMessage = TextReply | AttachmentReply | TemplateReply | ReactionReply | SenderActionReply


def stored(message: dict[str, Any]) -> ReplyMessage:
    """A reply from the JSON shape its `ReplyQueued` stored."""
    return msgspec.convert(message, ReplyMessage)  # type: ignore[no-any-return]


def of_event(
    text: str | None, attachment: dict[str, Any] | None, message: dict[str, Any] | None
) -> ReplyMessage:
    """The reply a `ReplyQueued` (or its outbox row) holds: its `message`, or, in one
    stored before replies had kinds, its text or attachment."""
    if message:
        return stored(message)
    if attachment:
        return AttachmentReply(media_type=attachment.get("type") or "file", url=attachment["url"])
    return TextReply(text=text or "")


def as_json(reply: ReplyMessage) -> dict[str, Any]:
    """What `ReplyQueued.message` stores."""
    return msgspec.to_builtins(reply)  # type: ignore[no-any-return]


def text_of(reply: ReplyMessage) -> str:
    """The reply's text ("" for what has none): its echo carries it."""
    return reply.text if isinstance(reply, TextReply) else ""


def kind_of(reply: ReplyMessage) -> str:
    """What the message history calls it: text, image, ..., template, reaction, typing_on."""
    if isinstance(reply, AttachmentReply):
        return reply.media_type
    if isinstance(reply, SenderActionReply):
        return reply.action
    return type(reply).__struct_config__.tag  # type: ignore[return-value]


def attachments_of(reply: ReplyMessage) -> list[dict[str, Any]]:
    """The reply's attachments as the message history shows them (in Meta's shape)."""
    if isinstance(reply, AttachmentReply | TemplateReply):
        attachment: dict[str, Any] = meta_fields(reply)["message"]["attachment"]
        return [attachment]
    return []


def is_message(reply: ReplyMessage) -> bool:
    """Whether it is a message (which a person may send tagged `HUMAN_AGENT` for 7 days),
    rather than a reaction or a sender action (only within 24 hours)."""
    return not isinstance(reply, ReactionReply | SenderActionReply)


def send_class(reply: ReplyMessage) -> str:
    """Which of Meta's per-account rates the send counts against: `media` (audio, video:
    10 a second) or `text` (everything else: 300 a second)."""
    if isinstance(reply, AttachmentReply) and reply.media_type in SLOW_MEDIA:
        return "media"
    return "text"


# -- what Meta would refuse --------------------------------------------------------------


def _required(value: str | None, field: str, what: str) -> str:
    if value is None or not value.strip():
        raise InvalidInput(field, f"{what} is required")
    return value


def _at_most(value: str, limit: int, field: str, what: str) -> None:
    if len(value) > limit:
        raise InvalidInput(field, f"{what} is {len(value)} characters; Meta takes at most {limit}")


def _https(url: str | None, field: str) -> None:
    url = _required(url, field, "a URL")
    if not url.startswith("https://"):
        raise InvalidInput(field, "give an https:// URL")
    _at_most(url, MAX_URL, field, "the URL")


def check_text(text: str, field: str = "text") -> None:
    """A text Meta takes: not empty, at most 1000 bytes of UTF-8."""
    _required(text, field, "a text")
    size = len(text.encode())
    if size > MAX_TEXT_BYTES:
        raise InvalidInput(
            field, f"the text is {size} bytes of UTF-8; Meta takes at most {MAX_TEXT_BYTES}"
        )


def check_quick_replies(quick_replies: list[QuickReply], field: str = "quick_replies") -> None:
    if len(quick_replies) > MAX_QUICK_REPLIES:
        raise InvalidInput(
            field, f"{len(quick_replies)} quick replies; Meta takes at most {MAX_QUICK_REPLIES}"
        )
    for index, quick in enumerate(quick_replies):
        at = f"{field}[{index}]"
        if quick.content_type != "text":
            raise InvalidInput(f"{at}.content_type", "quick replies are plain text: 'text'")
        _required(quick.title, f"{at}.title", "a quick reply's title")
        _at_most(quick.title, MAX_QUICK_REPLY_TITLE, f"{at}.title", "the title")
        _required(quick.payload, f"{at}.payload", "a quick reply's payload")
        _at_most(quick.payload, MAX_PAYLOAD, f"{at}.payload", "the payload")


def check_elements(elements: list[Element], field: str = "template.elements") -> None:
    if not elements:
        raise InvalidInput(field, "a template needs at least one element")
    if len(elements) > MAX_ELEMENTS:
        raise InvalidInput(field, f"{len(elements)} elements; Meta takes at most {MAX_ELEMENTS}")
    for index, element in enumerate(elements):
        at = f"{field}[{index}]"
        _required(element.title, f"{at}.title", "an element's title")
        _at_most(element.title, MAX_ELEMENT_TEXT, f"{at}.title", "the title")
        if element.subtitle is not None:
            _at_most(element.subtitle, MAX_ELEMENT_TEXT, f"{at}.subtitle", "the subtitle")
        if element.image_url is not None:
            _https(element.image_url, f"{at}.image_url")
        if len(element.buttons) > MAX_BUTTONS:
            raise InvalidInput(
                f"{at}.buttons", f"{len(element.buttons)} buttons; Meta takes at most {MAX_BUTTONS}"
            )
        for number, button in enumerate(element.buttons):
            _check_button(button, f"{at}.buttons[{number}]")


def _check_button(button: Button, at: str) -> None:
    if button.type not in BUTTON_TYPES:
        raise InvalidInput(f"{at}.type", "a button is web_url or postback")
    _required(button.title, f"{at}.title", "a button's title")
    _at_most(button.title, MAX_BUTTON_TITLE, f"{at}.title", "the title")
    if button.type == "web_url":
        _https(button.url, f"{at}.url")
    else:
        payload = _required(button.payload, f"{at}.payload", "a postback button's payload")
        _at_most(payload, MAX_PAYLOAD, f"{at}.payload", "the payload")


def check(reply: ReplyMessage) -> None:
    """Refuse (`InvalidInput`, naming the request's field) what Meta would refuse."""
    if isinstance(reply, TextReply):
        check_text(reply.text)
        check_quick_replies(reply.quick_replies)
    elif isinstance(reply, AttachmentReply):
        if reply.media_type not in MEDIA_TYPES:
            raise InvalidInput("attachment_type", "an attachment is image, video, audio or file")
        if (reply.url is None) == (reply.attachment_id is None):
            raise InvalidInput("attachment_url", "give either an attachment_url or attachment_id")
        if reply.url is not None:
            _https(reply.url, "attachment_url")
        else:
            attachment_id = _required(reply.attachment_id, "attachment_id", "an attachment id")
            if not attachment_id.isdigit() or len(attachment_id) > 32:
                raise InvalidInput("attachment_id", "an attachment id is Meta's number")
            if reply.reusable:
                raise InvalidInput("reusable", "an attachment id is reusable already")
    elif isinstance(reply, TemplateReply):
        check_elements(reply.elements)
    elif isinstance(reply, ReactionReply):
        _required(reply.message_id, "reaction.message_id", "the id of the message reacted to")
        if reply.reaction is not None and reply.reaction not in REACTIONS:
            known = ", ".join(REACTIONS)
            raise InvalidInput("reaction.reaction", f"Instagram takes the reaction {known}")
    elif reply.action not in SENDER_ACTIONS:
        raise InvalidInput("sender_action", "a sender action is " + ", ".join(SENDER_ACTIONS))


# -- Meta's request ----------------------------------------------------------------------


def meta_fields(reply: ReplyMessage, *, attachment_id: str | None = None) -> dict[str, Any]:
    """The Send API request's fields beside `recipient` (and any tag): `message`, or
    `sender_action` (and its `payload`). `attachment_id`: the uploaded id of a reusable
    attachment's URL."""
    if isinstance(reply, TextReply):
        message: dict[str, Any] = {"text": reply.text}
        if reply.quick_replies:
            message["quick_replies"] = [
                {"content_type": q.content_type, "title": q.title, "payload": q.payload}
                for q in reply.quick_replies
            ]
        return {"message": message}
    if isinstance(reply, AttachmentReply):
        chosen = attachment_id or reply.attachment_id
        payload = {"attachment_id": chosen} if chosen else {"url": reply.url}
        return {"message": {"attachment": {"type": reply.media_type, "payload": payload}}}
    if isinstance(reply, TemplateReply):
        elements = [msgspec.to_builtins(element) for element in reply.elements]
        template = {"template_type": "generic", "elements": elements}
        return {"message": {"attachment": {"type": "template", "payload": template}}}
    if isinstance(reply, ReactionReply):
        if reply.reaction is None:
            return {"sender_action": "unreact", "payload": {"message_id": reply.message_id}}
        return {
            "sender_action": "react",
            "payload": {"message_id": reply.message_id, "reaction": reply.reaction},
        }
    return {"sender_action": reply.action}
