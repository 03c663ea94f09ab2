"""Every kind of reply, and each of Meta's limits on it: what is refused names the field
(as the CRM's request and a rule name it), what is taken becomes Meta's request body."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from application.errors import InvalidInput
from application.replies import ReplyRequest, reply_of
from application.reply_messages import (
    AttachmentReply,
    ReactionReply,
    SenderActionReply,
    TemplateReply,
    TextReply,
    as_json,
    is_message,
    meta_fields,
    of_event,
    send_class,
    stored,
)
from application.rules import RuleDefinition, validate_rule

HTTPS = "https://shop.example/a.jpg"


def quick(n: int, **change: Any) -> list[dict[str, Any]]:
    return [{"title": f"Option {i}", "payload": f"P{i}", **change} for i in range(n)]


def element(**change: Any) -> dict[str, Any]:
    base = {
        "title": "Red hat",
        "subtitle": "One size",
        "image_url": HTTPS,
        "buttons": [
            {"type": "web_url", "title": "View", "url": "https://shop.example/hat"},
            {"type": "postback", "title": "Buy", "payload": "BUY_HAT"},
        ],
    }
    return {**base, **change}


def button(**change: Any) -> dict[str, Any]:
    return {"type": "postback", "title": "Buy", "payload": "BUY", **change}


def tpl(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"template": {"elements": list(elements)}}


def buttons(*given: dict[str, Any]) -> dict[str, Any]:
    return tpl(element(buttons=list(given)))


E0 = "template.elements[0]"


def request(body: dict[str, Any]) -> ReplyRequest:
    return msgspec.convert(body, ReplyRequest)


TAKEN = [
    ({"text": "Hello"}, {"message": {"text": "Hello"}}),
    ({"text": "é" * 500}, {"message": {"text": "é" * 500}}),  # 1000 bytes
    (
        {"text": "Pick one", "quick_replies": quick(1)},
        {
            "message": {
                "text": "Pick one",
                "quick_replies": [{"content_type": "text", "title": "Option 0", "payload": "P0"}],
            }
        },
    ),
    ({"text": "Pick", "quick_replies": quick(13)}, None),
    ({"text": "Pick", "quick_replies": quick(1, title="x" * 20)}, None),
    (
        {"attachment_url": HTTPS, "attachment_type": "image"},
        {"message": {"attachment": {"type": "image", "payload": {"url": HTTPS}}}},
    ),
    (
        {"attachment_url": "https://shop.example/menu.pdf", "attachment_type": "file"},
        {
            "message": {
                "attachment": {"type": "file", "payload": {"url": "https://shop.example/menu.pdf"}}
            }
        },
    ),
    (
        {"attachment_id": "1234567", "attachment_type": "video"},
        {"message": {"attachment": {"type": "video", "payload": {"attachment_id": "1234567"}}}},
    ),
    ({"attachment_url": HTTPS, "attachment_type": "audio", "reusable": True}, None),
    (
        {"template": {"elements": [element()]}},
        {
            "message": {
                "attachment": {
                    "type": "template",
                    "payload": {"template_type": "generic", "elements": [element()]},
                }
            }
        },
    ),
    ({"template": {"elements": [element()] * 10}}, None),
    ({"template": {"elements": [{"title": "t" * 80, "subtitle": "s" * 80}]}}, None),
    (
        {"reaction": {"message_id": "m-1", "reaction": "love"}},
        {"sender_action": "react", "payload": {"message_id": "m-1", "reaction": "love"}},
    ),
    (
        {"reaction": {"message_id": "m-1", "remove": True}},
        {"sender_action": "unreact", "payload": {"message_id": "m-1"}},
    ),
    ({"sender_action": "typing_on"}, {"sender_action": "typing_on"}),
    ({"sender_action": "typing_off"}, {"sender_action": "typing_off"}),
    ({"sender_action": "mark_seen"}, {"sender_action": "mark_seen"}),
]


@pytest.mark.parametrize(("body", "meta"), TAKEN)
def test_a_reply_within_metas_limits_is_taken(
    body: dict[str, Any], meta: dict[str, Any] | None
) -> None:
    reply = reply_of(request(body))

    assert stored(as_json(reply)) == reply  # the event's JSON shape reads back the same
    if meta is not None:
        assert meta_fields(reply) == meta


REFUSED = [
    ({}, "text"),
    ({"text": ""}, "text"),
    ({"text": "   "}, "text"),
    ({"text": "x" * 1001}, "text"),
    ({"text": "é" * 501}, "text"),  # 1002 bytes
    ({"text": "hi", "sender_action": "typing_on"}, "text"),
    ({"quick_replies": quick(1)}, "text"),
    ({"text": "Pick", "quick_replies": quick(14)}, "quick_replies"),
    ({"text": "Pick", "quick_replies": quick(4, title="x" * 21)}, "quick_replies[0].title"),
    (
        {"text": "Pick", "quick_replies": [*quick(3), {"title": "", "payload": "P"}]},
        "quick_replies[3].title",
    ),
    (
        {"text": "Pick", "quick_replies": [*quick(2), {"title": "T", "payload": ""}]},
        "quick_replies[2].payload",
    ),
    ({"text": "Pick", "quick_replies": quick(1, payload="p" * 1001)}, "quick_replies[0].payload"),
    (
        {"text": "Pick", "quick_replies": quick(1, content_type="user_email")},
        "quick_replies[0].content_type",
    ),
    ({"attachment_url": HTTPS}, "attachment_type"),
    ({"attachment_url": HTTPS, "attachment_type": "sticker"}, "attachment_type"),
    ({"attachment_url": "http://shop.example/a.jpg", "attachment_type": "image"}, "attachment_url"),
    ({"attachment_url": "https://" + "a" * 2000, "attachment_type": "image"}, "attachment_url"),
    ({"attachment_url": HTTPS, "attachment_id": "1", "attachment_type": "image"}, "attachment_url"),
    ({"attachment_id": "abc", "attachment_type": "image"}, "attachment_id"),
    ({"attachment_id": "1", "attachment_type": "image", "reusable": True}, "reusable"),
    ({"template": {"elements": []}}, "template.elements"),
    ({"template": {"elements": [element()] * 11}}, "template.elements"),
    (tpl(element(title="")), f"{E0}.title"),
    (tpl(element(), element(title="t" * 81)), "template.elements[1].title"),
    (tpl(element(subtitle="s" * 81)), f"{E0}.subtitle"),
    (tpl(element(image_url="http://a.example/x.png")), f"{E0}.image_url"),
    (buttons(*[button()] * 4), f"{E0}.buttons"),
    (buttons(button(type="call")), f"{E0}.buttons[0].type"),
    (buttons(button(), button(title="b" * 21)), f"{E0}.buttons[1].title"),
    (buttons(button(payload=None)), f"{E0}.buttons[0].payload"),
    (buttons(button(payload="p" * 1001)), f"{E0}.buttons[0].payload"),
    (buttons({"type": "web_url", "title": "Go"}), f"{E0}.buttons[0].url"),
    ({"reaction": {"message_id": "", "reaction": "love"}}, "reaction.message_id"),
    ({"reaction": {"message_id": "m-1", "reaction": "thumbs"}}, "reaction.reaction"),
    ({"reaction": {"message_id": "m-1"}}, "reaction.reaction"),
    ({"reaction": {"message_id": "m-1", "reaction": "love", "remove": True}}, "reaction.reaction"),
    ({"sender_action": "typing"}, "sender_action"),
]


@pytest.mark.parametrize(("body", "field"), REFUSED)
def test_what_meta_would_refuse_is_refused_naming_the_field(
    body: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        reply_of(request(body))

    assert refused.value.field == field


def test_a_reply_queued_before_replies_had_kinds_reads_as_its_text_or_attachment() -> None:
    assert of_event("Hi", None, None) == TextReply(text="Hi")
    assert of_event("", {"type": "image", "url": HTTPS}, None) == AttachmentReply(
        media_type="image", url=HTTPS
    )


def test_audio_and_video_count_against_the_slower_rate_and_actions_are_not_messages() -> None:
    assert send_class(AttachmentReply(media_type="audio", url=HTTPS)) == "media"
    assert send_class(AttachmentReply(media_type="video", url=HTTPS)) == "media"
    assert send_class(AttachmentReply(media_type="image", url=HTTPS)) == "text"
    assert send_class(TemplateReply(elements=[])) == "text"
    assert not is_message(SenderActionReply(action="typing_on"))
    assert not is_message(ReactionReply(message_id="m", reaction="love"))
    assert is_message(TextReply(text="x"))


def test_a_reusable_attachment_goes_by_the_id_its_url_was_given() -> None:
    reply = AttachmentReply(media_type="image", url=HTTPS, reusable=True)

    assert meta_fields(reply, attachment_id="42") == {
        "message": {"attachment": {"type": "image", "payload": {"attachment_id": "42"}}}
    }


RULES = [
    ({"reply": "Hi", "quick_replies": quick(14)}, "quick_replies"),
    ({"reply": "Hi", "quick_replies": quick(1, title="x" * 21)}, "quick_replies[0].title"),
    ({"template": {"elements": [element()] * 11}}, "template.elements"),
    ({"template": {"elements": [element(title="t" * 81)]}}, "template.elements[0].title"),
    ({"reply": "Hi", "template": {"elements": [element()]}}, "reply"),
    ({"quick_replies": quick(1), "template": {"elements": [element()]}}, "quick_replies"),
    ({}, "reply"),
]


@pytest.mark.parametrize(("change", "field"), RULES)
def test_a_rules_reply_is_held_to_the_same_limits(change: dict[str, Any], field: str) -> None:
    body = {"name": "r", "triggers": [{"type": "keyword", "value": "hat"}], **change}

    with pytest.raises(InvalidInput) as refused:
        validate_rule(msgspec.convert(body, RuleDefinition))

    assert refused.value.field == field


def test_a_rule_without_quick_replies_or_template_is_stored_as_before() -> None:
    body = {"name": "r", "triggers": [{"type": "keyword", "value": "hat"}], "reply": "Hi"}

    stored_rule = validate_rule(msgspec.convert(body, RuleDefinition)).to_json()

    assert "quick_replies" not in stored_rule
    assert "template" not in stored_rule


def test_a_reply_queued_event_stored_without_a_message_still_loads() -> None:
    from domain.conversation import Conversation

    conversation = Conversation(ig_account_id="1", participant_id="2")
    conversation.queue_reply(
        reply_id="r-1",
        text="",
        key="request:k",
        automated=False,
        in_reply_to=None,
        rule_id=None,
        rule_version=None,
        trigger_at=None,
        by="t",
        attachment={"type": "image", "url": HTTPS},
    )
    queued = conversation.collect_events()[-1]
    # the event as a release before `message` stored it, read as the library's mapper
    # reads a stored event (its state set, no __init__)
    old: Any = object.__new__(type(queued))
    old.__dict__.update({k: v for k, v in queued.__dict__.items() if k != "message"})
    replayed = Conversation(ig_account_id="1", participant_id="2")
    old.mutate(replayed)

    assert replayed.reply("r-1") is not None
    message = getattr(old, "message", None)  # as the read models read it
    assert of_event(old.text, old.attachment, message) == AttachmentReply(
        media_type="image", url=HTTPS
    )


def test_a_comment_rules_private_reply_is_a_text() -> None:
    body = {
        "name": "r",
        "triggers": [{"type": "comment", "value": "hat"}],
        "reply": "Hi",
        "quick_replies": quick(1),
    }

    with pytest.raises(InvalidInput) as refused:
        validate_rule(msgspec.convert(body, RuleDefinition))

    assert refused.value.field == "quick_replies"
