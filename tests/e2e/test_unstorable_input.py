"""Input that cannot be stored faithfully is refused or normalised at the edge, on every
backend: a NUL character (PostgreSQL text cannot hold one), integers past 64 bits, absurd
timestamps, items of the wrong shape. Nothing of a refused body is stored, and what was
accepted before stays readable."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from projections.parked import parked_events
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    bearer,
    event_types,
    issue_key,
    meta_json,
    signed_headers,
    stored_events,
)

Client = AsyncTestClient[Any]
CONVERSATION = str(conversation_id(ACCOUNT, PARTICIPANT))
BASE = f"/api/v1/accounts/{ACCOUNT}"


def text_item(mid: str = "mid-edge-1", text: Any = "hello") -> dict[str, Any]:
    body = meta_json("text")
    item: dict[str, Any] = body["entry"][0]["messaging"][0]
    item["message"] = {"mid": mid, "text": text}
    return body


def edit(count: object) -> dict[str, Any]:
    return {"mid": "mid-edited", "text": "hello again", "num_edit": count}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def post_webhook(client: Client, body: bytes) -> Any:
    return await client.post("/webhooks/instagram", content=body, headers=signed_headers(body))


async def test_nul_in_a_webhook_text_is_stored_as_a_replacement_character(
    client: Client, services: Services
) -> None:
    # given a signed message whose text holds a NUL
    body = encode(text_item(text="hi\u0000there"))

    # when Meta delivers it
    response = await post_webhook(client, body)

    # then it is stored, the NUL replaced by U+FFFD, and the read models show it
    assert response.status_code == 200, response.text
    received = [data for kind, data in stored_events(services) if kind.endswith("Received")]
    assert received[-1]["text"] == "hi\ufffdthere"
    services.read_models.wait_for("message_history")
    services.read_models.wait_for("conversation_list")
    key = bearer(issue_key(services, "account", ACCOUNT))
    listed = await client.get(f"{BASE}/conversations", headers=key)
    assert listed.json()["conversations"][0]["last_message"]["preview"] == "hi\ufffdthere"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda item: item.update(timestamp=2**63), "timestamp"),
        (lambda item: item.update(timestamp=10**59), "timestamp"),
        (lambda item: item.update(timestamp=-1), "timestamp"),
        (lambda item: item.update(timestamp=1.5e12), "timestamp"),
        (lambda item: item.update(message="not an object"), "message"),
        (lambda item: item.update(message={"mid": 42, "text": "x"}), "message.mid"),
        (lambda item: item["sender"].update(id=2**64), "sender.id"),
        (lambda item: item["message"].update(extra=[1, -(2**63) - 1]), "message.extra[1]"),
        (lambda item: item.update(reaction=["react"]), "reaction"),
        # Ids key the read models' rows (a message's mid, a participant's IGSID): one
        # longer than any Meta sends would be stored and then parked by every read model.
        (lambda item: item["message"].update(mid="m" * 256), "message.mid"),
        (lambda item: item.update(reaction={"mid": "m" * 256, "action": "react"}), "reaction.mid"),
        (lambda item: item["sender"].update(id="5" * 65), "sender.id"),
        (lambda item: item["recipient"].update(id="1" * 65), "recipient.id"),
        # An edit's count is a count (the history keeps it in an integer column).
        (lambda item: item.update(message_edit=edit(2**31)), "message_edit.num_edit"),
        (lambda item: item.update(message_edit=edit(-1)), "message_edit.num_edit"),
        (lambda item: item.update(message_edit=edit("9" * 30)), "message_edit.num_edit"),
    ],
)
async def test_a_signed_item_that_cannot_be_stored_is_400_and_nothing_is_stored(
    client: Client, services: Services, change: Any, field: str
) -> None:
    # given a body with a good item first and a bad one after it
    body = text_item(mid="mid-good")
    bad = json.loads(json.dumps(body["entry"][0]["messaging"][0]))
    bad["message"]["mid"] = "mid-bad"
    change(bad)
    body["entry"][0]["messaging"].append(bad)

    response = await post_webhook(client, encode(body))

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert f"entry[0].messaging[1].{field}" in response.json()["detail"]
    assert event_types(services) == ["Account.Registered"]


@pytest.mark.parametrize(
    ("attachment", "kind"),
    [
        ({"type": "image", "payload": "https://cdn.example/a.jpg"}, "image"),
        ({"type": "image", "payload": ["https://cdn.example/a.jpg"]}, "image"),
        ({"type": "video", "payload": 7}, "video"),
        # a type no longer than Meta's names is its kind; another is an "attachment"
        ({"type": "t" * 33, "payload": {"url": "https://cdn.example/a.bin"}}, "attachment"),
        ({"type": ["image"], "payload": None}, "attachment"),
    ],
)
async def test_an_attachment_of_a_shape_meta_does_not_send_is_kept_and_stops_no_read_model(
    client: Client, services: Services, attachment: dict[str, Any], kind: str
) -> None:
    # given a signed message whose attachment has an odd type or payload
    body = text_item(mid="mid-odd-attachment")
    body["entry"][0]["messaging"][0]["message"] = {
        "mid": "mid-odd-attachment",
        "attachments": [attachment],
    }

    # when Meta delivers it and the read models follow
    response = await post_webhook(client, encode(body))
    assert response.status_code == 200, response.text
    for name in services.read_models.rebuildable():
        services.read_models.wait_for(name)

    # then no read model parked it, and the message is listed with its attachment as sent
    assert parked_events(services.read_models.message_history.engine) == []
    key = bearer(issue_key(services, "account", ACCOUNT))
    listed = await client.get(f"{BASE}/conversations/{CONVERSATION}/messages", headers=key)
    [message] = listed.json()["messages"]
    assert message["attachments"] == [attachment]
    assert message["kind"] == kind


def comment_body(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    value = {
        "from": {"id": "5500000000000001", "username": "bob"},
        "media": {"id": "18000000000000001", "media_product_type": "FEED"},
        "id": "17900000000000001",
        "text": "How much?",
    }
    change(value)
    entry = {"id": ACCOUNT, "time": 1767225600, "changes": [{"field": "comments", "value": value}]}
    return {"object": "instagram", "entry": [entry]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda value: value.update(id="1" * 65), "id"),
        (lambda value: value["media"].update(id="1" * 65), "media.id"),
        (lambda value: value["from"].update(id="5" * 65), "from.id"),
        (lambda value: value.update(parent_id="1" * 65), "parent_id"),
        (
            lambda value: value["media"].update(media_product_type="F" * 33),
            "media.media_product_type",
        ),
    ],
)
async def test_a_comment_whose_ids_no_read_model_can_key_is_400_naming_the_field(
    client: Client, services: Services, change: Callable[[dict[str, Any]], Any], field: str
) -> None:
    response = await post_webhook(client, encode(comment_body(change)))

    assert response.status_code == 400, response.text
    assert f"entry[0].changes[0].value.{field}" in response.json()["detail"]
    assert event_types(services) == ["Account.Registered"]


@pytest.mark.parametrize("sent", [2**63, 2**64 - 1, -1, 253402300800000])
async def test_a_comment_sent_at_a_time_no_read_model_can_hold_is_400(
    client: Client, services: Services, sent: int
) -> None:
    # Meta's comment webhooks carry no time of their own: entry[].time stands for it.
    body = comment_body(lambda value: None)
    body["entry"][0]["time"] = sent

    response = await post_webhook(client, encode(body))

    assert response.status_code == 400, response.text
    assert "entry[0].time" in response.json()["detail"]
    assert event_types(services) == ["Account.Registered"]


async def test_an_unserved_account_is_logged_without_the_whole_of_its_id(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # given a signed comment for an account whose "id" is 100,000 characters long
    body = comment_body(lambda value: None)
    body["entry"][0]["id"] = "9" * 100_000

    # when Meta delivers it
    with caplog.at_level("WARNING", logger="application.ingest"):
        response = await post_webhook(client, encode(body))

    # then it is skipped as not served, in a log line of bounded length
    assert response.status_code == 200, response.text
    [skipped] = [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
    assert len(skipped) < 200, len(skipped)


async def test_a_body_of_another_object_is_refused_without_echoing_all_of_it(
    client: Client, services: Services
) -> None:
    body = text_item()
    body["object"] = "page" * 25_000

    response = await post_webhook(client, encode(body))

    assert response.status_code == 400, response.text
    assert "got object 'pagepage" in response.json()["detail"]
    assert len(response.json()["detail"]) < 200
    assert event_types(services) == ["Account.Registered"]


async def test_a_reply_with_a_nul_is_422_naming_the_field(
    client: Client, services: Services
) -> None:
    await post_webhook(client, encode(text_item()))
    key = bearer(issue_key(services, "account", ACCOUNT))
    before = len(event_types(services))

    response = await client.post(
        f"{BASE}/conversations/{CONVERSATION}/replies",
        json={"text": "hi\u0000there"},
        headers={**key, "idempotency-key": "nul-1"},
    )

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == "text"
    assert "NUL" in problem["detail"]
    assert len(event_types(services)) == before


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/rules", {"name": "x\u0000", "triggers": [], "reply": "r"}, "name"),
        (
            "/rules",
            {"name": "x", "triggers": [{"type": "keyword", "value": "a\u0000"}], "reply": "r"},
            "triggers[0].value",
        ),
        ("/rules", {"name": "x", "priority": 2**63, "triggers": [], "reply": "r"}, "priority"),
        ("", {"settings": {"fallback_reply": "\u0000"}}, "settings.fallback_reply"),
    ],
)
async def test_any_api_body_with_a_nul_or_an_oversized_integer_is_422(
    client: Client, services: Services, path: str, payload: dict[str, Any], field: str
) -> None:
    admin = bearer(issue_key(services, "admin"))
    before = len(event_types(services))

    send = client.patch if path == "" else client.post
    response = await send(f"{BASE}{path}", json=payload, headers=admin)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert len(event_types(services)) == before


@pytest.mark.parametrize("depth", [1_000, 100_000])
async def test_an_api_body_nested_too_deep_is_400_not_500(
    client: Client, services: Services, depth: int
) -> None:
    admin = bearer(issue_key(services, "admin"))
    body = b'{"name": ' + b"[" * depth + b"]" * depth + b"}"

    response = await client.post(
        f"{BASE}/rules", content=body, headers={**admin, "content-type": "application/json"}
    )

    assert response.status_code == 400, response.text
    assert "nested" in response.json()["detail"]
