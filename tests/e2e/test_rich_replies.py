"""Every kind of reply, from the CRM's request (or a rule) to the exact body the Send API
received: texts with quick replies, attachments by URL or by reusable id, templates,
reactions and sender actions; and what Meta would refuse, refused at once naming the
field."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    bearer,
    issue_key,
    meta_json,
    signed_headers,
    stored_events,
)
from tests.support.fake_graph import FakeGraphApi, meta_error

Client = AsyncTestClient[Any]
CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
REPLIES = f"/api/v1/accounts/{ACCOUNT}/conversations/{CONVERSATION}/replies"
MESSAGES = f"/api/v1/accounts/{ACCOUNT}/conversations/{CONVERSATION}/messages"
DAY_MS = 24 * 3_600_000
IMAGE = "https://shop.example/hat.jpg"
HAT: dict[str, Any] = {
    "title": "Red hat",
    "subtitle": "One size fits all",
    "image_url": IMAGE,
    "buttons": [
        {"type": "web_url", "title": "View", "url": "https://shop.example/hat"},
        {"type": "postback", "title": "Buy", "payload": "BUY_HAT"},
    ],
}
QUICK = [
    {"title": "Shipping", "payload": "SHIPPING"},
    {"title": "Returns", "payload": "RETURNS"},
]


@pytest.fixture
def services(services_with_graph: Services) -> Services:
    """Sending to the fake Graph API (`tests/e2e/conftest.py`)."""
    return services_with_graph


async def deliver(
    api: Client, text: str = "Hello", mid: str = "m-1", at: int | None = None
) -> None:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["timestamp"] = at if at is not None else int(time.time() * 1000)
    item["message"] = {"mid": mid, "text": text}
    raw = json.dumps(body).encode()
    response = await api.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    assert response.status_code == 200, response.text


async def step(services: Services) -> None:
    for _ in range(3):
        services.read_models.catch_up()
        await services.dispatcher.drain()
    services.read_models.catch_up()


async def send(api: Client, key: dict[str, str], body: dict[str, Any], idem: str) -> Any:
    return await api.post(REPLIES, json=body, headers={**key, "idempotency-key": idem})


KINDS = [
    (
        "text with quick replies",
        {"text": "What can we help with?", "quick_replies": QUICK},
        {
            "message": {
                "text": "What can we help with?",
                "quick_replies": [
                    {"content_type": "text", "title": "Shipping", "payload": "SHIPPING"},
                    {"content_type": "text", "title": "Returns", "payload": "RETURNS"},
                ],
            }
        },
        "text",
    ),
    (
        "image by URL",
        {"attachment_url": IMAGE, "attachment_type": "image"},
        {"message": {"attachment": {"type": "image", "payload": {"url": IMAGE}}}},
        "image",
    ),
    (
        "PDF by URL",
        {"attachment_url": "https://shop.example/menu.pdf", "attachment_type": "file"},
        {
            "message": {
                "attachment": {"type": "file", "payload": {"url": "https://shop.example/menu.pdf"}}
            }
        },
        "file",
    ),
    (
        "video by attachment id",
        {"attachment_id": "987654321", "attachment_type": "video"},
        {"message": {"attachment": {"type": "video", "payload": {"attachment_id": "987654321"}}}},
        "video",
    ),
    (
        "audio by URL",
        {"attachment_url": "https://shop.example/hi.m4a", "attachment_type": "audio"},
        {
            "message": {
                "attachment": {"type": "audio", "payload": {"url": "https://shop.example/hi.m4a"}}
            }
        },
        "audio",
    ),
    (
        "generic template",
        {"template": {"elements": [HAT, {"title": "Blue hat"}]}},
        {
            "message": {
                "attachment": {
                    "type": "template",
                    "payload": {
                        "template_type": "generic",
                        "elements": [HAT, {"title": "Blue hat"}],
                    },
                }
            }
        },
        "template",
    ),
    (
        "reaction",
        {"reaction": {"message_id": "m-1", "reaction": "love"}},
        {"sender_action": "react", "payload": {"message_id": "m-1", "reaction": "love"}},
        "reaction",
    ),
    (
        "reaction taken back",
        {"reaction": {"message_id": "m-1", "remove": True}},
        {"sender_action": "unreact", "payload": {"message_id": "m-1"}},
        "reaction",
    ),
    ("typing on", {"sender_action": "typing_on"}, {"sender_action": "typing_on"}, "typing_on"),
    ("typing off", {"sender_action": "typing_off"}, {"sender_action": "typing_off"}, "typing_off"),
    ("mark seen", {"sender_action": "mark_seen"}, {"sender_action": "mark_seen"}, "mark_seen"),
]


@pytest.mark.parametrize(
    ("body", "meta", "kind"), [k[1:] for k in KINDS], ids=[k[0] for k in KINDS]
)
async def test_each_kind_of_reply_reaches_the_send_api_as_meta_documents_it(
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    key: dict[str, str],
    body: dict[str, Any],
    meta: dict[str, Any],
    kind: str,
) -> None:
    await deliver(api)

    accepted = await send(api, key, body, "k-1")
    await step(services)
    status = await api.get(accepted.headers["location"], headers=key)
    history = await api.get(MESSAGES, headers=key)
    listed = await api.get(MESSAGES.removesuffix("/messages"), headers=key)

    assert accepted.status_code == 202, accepted.text
    assert [s["body"] for s in graph.sent] == [{"recipient": {"id": PARTICIPANT}, **meta}]
    assert status.json()["status"] == "sent"
    ours = [m for m in history.json()["messages"] if m["direction"] == "outbound"]
    assert [m["kind"] for m in ours] == [kind]
    last = listed.json()["last_message"]
    if "message" in meta:  # a message is the conversation's last; an action is none
        preview = body.get("text") or f"[{kind}]"
        assert (last["preview"], last["direction"]) == (preview, "outbound")
    else:
        assert (last["preview"], last["direction"]) == ("Hello", "inbound")


async def test_a_reusable_attachment_is_uploaded_once_and_sent_by_its_id(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api)
    menu = {"attachment_url": "https://shop.example/menu.pdf", "attachment_type": "file"}

    first = await send(api, key, {**menu, "reusable": True}, "k-1")
    await step(services)
    second = await send(api, key, {**menu, "reusable": True}, "k-2")
    await step(services)

    assert (first.status_code, second.status_code) == (202, 202)
    assert [u["body"] for u in graph.uploads] == [
        {
            "platform": "instagram",
            "message": {
                "attachment": {
                    "type": "file",
                    "payload": {"url": "https://shop.example/menu.pdf", "is_reusable": True},
                }
            },
        }
    ]
    assert graph.uploads[0]["path"] == f"/v21.0/{ACCOUNT}/message_attachments"
    given = graph.uploads[0]["attachment_id"]
    by_id = {"type": "file", "payload": {"attachment_id": given}}
    assert [s["body"]["message"]["attachment"] for s in graph.sent] == [by_id, by_id]


async def test_a_refused_upload_fails_the_reply_and_sends_nothing(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api)
    graph.answers.append((400, meta_error(100, "(#100) Param url is not a reachable file")))

    accepted = await send(
        api, key, {"attachment_url": IMAGE, "attachment_type": "image", "reusable": True}, "k-1"
    )
    await step(services)
    status = await api.get(accepted.headers["location"], headers=key)

    posted = [r["path"] for r in graph.requests if "body" in r]
    assert posted == [f"/v21.0/{ACCOUNT}/message_attachments"]
    assert graph.sent == []
    assert status.json()["status"] == "failed"
    assert status.json()["error"]["code"] == 100


REFUSED = [
    (
        {
            "text": "Pick",
            "quick_replies": [*QUICK, *QUICK[:1], {"title": "x" * 21, "payload": "X"}],
        },
        "quick_replies[3].title",
    ),
    (
        {"text": "Pick", "quick_replies": [{"title": f"Q{i}", "payload": "P"} for i in range(14)]},
        "quick_replies",
    ),
    ({"text": "é" * 501}, "text"),
    ({"template": {"elements": [HAT] * 11}}, "template.elements"),
    (
        {"template": {"elements": [{**HAT, "buttons": HAT["buttons"] * 2}]}},
        "template.elements[0].buttons",
    ),
    ({"attachment_url": IMAGE, "attachment_type": "gif"}, "attachment_type"),
    ({"reaction": {"message_id": "m-1", "reaction": "laugh"}}, "reaction.reaction"),
    ({"sender_action": "typing"}, "sender_action"),
    ({"reaction": {"message_id": "m-unknown", "reaction": "love"}}, "reaction.message_id"),
]


@pytest.mark.parametrize(("body", "field"), REFUSED)
async def test_what_meta_would_refuse_gets_a_422_naming_the_field_and_queues_nothing(
    api: Client, services: Services, key: dict[str, str], body: dict[str, Any], field: str
) -> None:
    await deliver(api)

    refused = await send(api, key, body, "k-1")

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["field"] == field
    assert "Conversation.ReplyQueued" not in [k for k, _ in stored_events(services)]


async def test_a_reaction_or_sender_action_after_24_hours_is_refused_a_message_is_tagged(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api, at=int(time.time() * 1000) - 3 * DAY_MS)

    typing = await send(api, key, {"sender_action": "typing_on"}, "k-1")
    react = await send(api, key, {"reaction": {"message_id": "m-1", "reaction": "love"}}, "k-2")
    carousel = await send(api, key, {"template": {"elements": [HAT]}}, "k-3")
    await step(services)

    assert (typing.status_code, typing.json()["field"]) == (422, "conversation")
    assert (react.status_code, react.json()["field"]) == (422, "conversation")
    assert carousel.status_code == 202
    assert [s["body"].get("tag") for s in graph.sent] == ["HUMAN_AGENT"]


async def test_a_rule_answers_with_quick_replies_or_a_template(
    api: Client, services: Services, graph: FakeGraphApi
) -> None:
    admin = bearer(issue_key(services, "admin"))
    rules = f"/api/v1/accounts/{ACCOUNT}/rules"
    menu = {
        "name": "menu",
        "triggers": [{"type": "keyword", "value": "help"}],
        "reply": "Hi {first_name}, what do you need?",
        "quick_replies": QUICK,
    }
    hats = {
        "name": "hats",
        "triggers": [{"type": "keyword", "value": "hats"}],
        "template": {"elements": [HAT]},
    }
    too_many = {**menu, "quick_replies": [{"title": "x" * 21, "payload": "X"}]}

    added = [await api.post(rules, headers=admin, json=rule) for rule in (menu, hats)]
    refused = await api.post(rules, headers=admin, json=too_many)
    tried = await api.post(f"{rules}/test", headers=admin, json={"text": "hats?"})
    await deliver(api, "help please", "m-1")
    await step(services)
    await deliver(api, "show me hats", "m-2")
    await step(services)

    assert [a.status_code for a in added] == [201, 201], [a.text for a in added]
    assert (refused.status_code, refused.json()["field"]) == (422, "quick_replies[0].title")
    assert tried.json()["message"] == {"type": "template", "elements": [HAT]}
    assert [s["body"]["message"] for s in graph.sent] == [
        {
            "text": "Hi Anna, what do you need?",
            "quick_replies": [
                {"content_type": "text", "title": "Shipping", "payload": "SHIPPING"},
                {"content_type": "text", "title": "Returns", "payload": "RETURNS"},
            ],
        },
        {
            "attachment": {
                "type": "template",
                "payload": {"template_type": "generic", "elements": [HAT]},
            }
        },
    ]
