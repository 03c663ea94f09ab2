"""The fake Graph API refuses what Meta's Send API refuses, checked on its own (not by
dmledger's validation), so the end-to-end tests would catch a body dmledger got wrong."""

from __future__ import annotations

from typing import Any

import pytest

from interfaces.dev_graph_checks import send_refusal, upload_refusal

TO = {"recipient": {"id": "1"}}


def quick(n: int, title: str = "T") -> list[dict[str, Any]]:
    return [{"content_type": "text", "title": title, "payload": "P"} for _ in range(n)]


def generic(elements: list[dict[str, Any]]) -> dict[str, Any]:
    payload = {"template_type": "generic", "elements": elements}
    return {"message": {"attachment": {"type": "template", "payload": payload}}}


TAKEN = [
    {"message": {"text": "hi", "quick_replies": quick(13)}},
    {"message": {"attachment": {"type": "file", "payload": {"url": "https://a.example/x.pdf"}}}},
    {"message": {"attachment": {"type": "image", "payload": {"attachment_id": "42"}}}},
    generic([{"title": "t", "buttons": [{"type": "postback", "title": "b", "payload": "p"}]}]),
    {"sender_action": "react", "payload": {"message_id": "m", "reaction": "love"}},
    {"sender_action": "unreact", "payload": {"message_id": "m"}},
    {"sender_action": "mark_seen"},
]
REFUSED = [
    {"message": {"text": "x" * 1001}},
    {"message": {"text": "hi", "quick_replies": quick(14)}},
    {"message": {"text": "hi", "quick_replies": quick(1, "x" * 21)}},
    {"message": {"attachment": {"type": "sticker", "payload": {"url": "https://a.example"}}}},
    generic([{"title": "t"}] * 11),
    generic([{"title": "t" * 81}]),
    generic([{"title": "t", "buttons": [{"type": "web_url", "title": "b"}]}]),
    {"sender_action": "react", "payload": {"message_id": "m", "reaction": "wow"}},
    {"sender_action": "react", "payload": {"reaction": "love"}},
    {"sender_action": "typing"},
]


@pytest.mark.parametrize("body", TAKEN)
def test_the_fake_takes_what_meta_takes(body: dict[str, Any]) -> None:
    assert send_refusal({**TO, **body}) is None


@pytest.mark.parametrize("body", REFUSED)
def test_the_fake_refuses_what_meta_refuses(body: dict[str, Any]) -> None:
    assert (send_refusal({**TO, **body}) or "").startswith("(#100)")


def test_an_upload_needs_the_platform_a_type_and_an_https_url() -> None:
    good = {
        "platform": "instagram",
        "message": {"attachment": {"type": "audio", "payload": {"url": "https://a.example/x"}}},
    }

    assert upload_refusal(good) is None
    assert upload_refusal({**good, "platform": "messenger"}) is not None
    assert upload_refusal({"platform": "instagram", "message": {}}) is not None
