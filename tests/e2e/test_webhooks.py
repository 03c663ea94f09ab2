"""Meta's webhook deliveries through the HTTP app, on every backend."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from interfaces.composition import Services
from tests.conftest import (
    ACCOUNT,
    APP_SECRET,
    PARTICIPANT,
    VERIFY_TOKEN,
    bearer,
    event_types,
    issue_key,
    meta_body,
    meta_json,
    signed_headers,
    stored_events,
)

Client = AsyncTestClient[Any]

# Each fixture body, and the conversation event it must become.
KINDS = [
    ("text", "Conversation.MessageReceived"),
    ("quick_reply", "Conversation.MessageReceived"),
    ("inline_reply", "Conversation.MessageReceived"),
    ("story_reply", "Conversation.MessageReceived"),
    ("image", "Conversation.MessageReceived"),
    ("video", "Conversation.MessageReceived"),
    ("audio", "Conversation.MessageReceived"),
    ("file", "Conversation.MessageReceived"),
    ("share", "Conversation.MessageReceived"),
    ("story_mention", "Conversation.MessageReceived"),
    ("reel", "Conversation.MessageReceived"),
    ("ig_reel", "Conversation.MessageReceived"),
    ("ig_post", "Conversation.MessageReceived"),
    ("ephemeral", "Conversation.MessageReceived"),
    ("multiple_attachments", "Conversation.MessageReceived"),
    ("unknown_attachment", "Conversation.MessageReceived"),
    ("referral_ad", "Conversation.MessageReceived"),
    ("unsupported", "Conversation.MessageReceived"),
    ("standby", "Conversation.MessageReceived"),
    ("echo", "Conversation.MessageEchoed"),
    ("unsend", "Conversation.MessageUnsent"),
    ("edit", "Conversation.MessageEdited"),
    ("reaction", "Conversation.ReactionAdded"),
    ("unreaction", "Conversation.ReactionRemoved"),
    ("read", "Conversation.MessagesSeen"),
    ("postback_icebreaker", "Conversation.PostbackReceived"),
    ("postback_button", "Conversation.PostbackReceived"),
    ("referral_igme", "Conversation.ReferralReceived"),
    ("unknown_item", "Conversation.UnrecognisedItemReceived"),
]


async def post(client: Client, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return await client.post(
        "/webhooks/instagram", content=body, headers=headers or signed_headers(body)
    )


async def test_a_webhook_sent_with_an_auditor_key_is_refused_and_not_stored(
    client: Client, services: Services
) -> None:
    # given a correctly signed body, sent with an auditor's key (read-only on every endpoint)
    body = meta_body("text")
    headers = {**signed_headers(body), **bearer(issue_key(services, "auditor", ACCOUNT))}
    before = event_types(services)

    response = await post(client, body, headers)

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert event_types(services) == before


async def test_a_stored_webhook_is_answered_event_received_as_plain_text(client: Client) -> None:
    response = await post(client, meta_body("text"))

    assert (response.status_code, response.text) == (200, "EVENT_RECEIVED")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == "14"
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(("kind", "event_type"), KINDS)
async def test_each_messaging_kind_is_stored_as_its_event_before_200(
    client: Client, services: Services, kind: str, event_type: str
) -> None:
    body = meta_body(kind)

    response = await post(client, body)

    assert response.status_code == 200, response.text
    assert response.text == "EVENT_RECEIVED"
    # the body's events, committed together (the auto-reply policy may add its own after)
    assert event_types(services)[1:3] == ["Conversation.Started", event_type]


async def test_message_event_keeps_what_meta_sent(client: Client, services: Services) -> None:
    body = meta_body("story_reply")
    item = meta_json("story_reply")["entry"][0]["messaging"][0]

    await post(client, body)

    kind, data = stored_events(services)[-1]
    assert kind == "Conversation.MessageReceived"
    assert data["mid"] == item["message"]["mid"]
    assert data["text"] == item["message"].get("text")
    assert data["reply_to"] == item["message"]["reply_to"]
    assert data["sent_at"] == item["timestamp"]
    assert data["standby"] is False


async def test_attachments_are_kept_with_their_urls(client: Client, services: Services) -> None:
    body = meta_body("multiple_attachments")
    attachments = meta_json("multiple_attachments")["entry"][0]["messaging"][0]["message"][
        "attachments"
    ]

    await post(client, body)

    _, data = stored_events(services)[-1]
    assert data["attachments"] == attachments
    assert all(a["payload"]["url"].startswith("https://") for a in data["attachments"])


async def test_echo_belongs_to_the_conversation_with_its_recipient(
    client: Client, services: Services
) -> None:
    await post(client, meta_body("text"))
    await post(client, meta_body("echo"))

    events = stored_events(services)
    conversations = {data["originator_id"] for _, data in events[1:]}
    assert len(conversations) == 1
    started = events[1][1]
    assert (started["ig_account_id"], started["participant_id"]) == (ACCOUNT, PARTICIPANT)


async def test_standby_items_are_marked_as_standby(client: Client, services: Services) -> None:
    await post(client, meta_body("standby"))

    _, data = stored_events(services)[-1]
    assert data["standby"] is True


async def test_unknown_item_is_kept_verbatim(client: Client, services: Services) -> None:
    item = meta_json("unknown_item")["entry"][0]["messaging"][0]

    await post(client, meta_body("unknown_item"))

    _, data = stored_events(services)[-1]
    assert data["item"] == item


async def test_redelivered_message_is_stored_once(client: Client, services: Services) -> None:
    body = meta_body("text")

    first = await post(client, body)
    again = await post(client, body)

    assert (first.status_code, again.status_code) == (200, 200)
    assert event_types(services).count("Conversation.MessageReceived") == 1


async def test_redelivered_reaction_and_read_are_stored_once(
    client: Client, services: Services
) -> None:
    for kind in ("reaction", "read", "reaction", "read", "unreaction", "unreaction"):
        assert (await post(client, meta_body(kind))).status_code == 200

    types = event_types(services)
    assert types.count("Conversation.ReactionAdded") == 1
    assert types.count("Conversation.MessagesSeen") == 1
    assert types.count("Conversation.ReactionRemoved") == 1


async def test_unsend_of_a_stored_message_is_recorded(client: Client, services: Services) -> None:
    await post(client, meta_body("text"))
    await post(client, meta_body("unsend"))

    assert event_types(services)[-2:] == [
        "Conversation.MessageReceived",
        "Conversation.MessageUnsent",
    ]


async def test_batched_body_stores_every_item_of_every_entry(
    client: Client, services: Services
) -> None:
    response = await post(client, meta_body("batched"))

    assert response.status_code == 200
    assert sorted(event_types(services)[1:]) == sorted(
        [
            "Conversation.Started",
            "Conversation.MessageReceived",
            "Conversation.ReactionAdded",
            "Conversation.Started",
            "Conversation.MessageReceived",
        ]
    )


async def test_bad_signature_is_401_and_stores_nothing(client: Client, services: Services) -> None:
    body = meta_body("text")

    response = await post(client, body, signed_headers(body, secret="not-the-app-secret"))

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "X-Hub-Signature-256" in response.json()["detail"]
    assert event_types(services) == ["Account.Registered"]


async def test_signature_of_other_bytes_is_401(client: Client, services: Services) -> None:
    # Meta signs the raw bytes; re-serialised JSON with the same meaning must not verify.
    body = meta_body("text")
    pretty = json.dumps(json.loads(body), indent=2).encode()

    response = await post(client, pretty, signed_headers(body))

    assert response.status_code == 401
    assert event_types(services) == ["Account.Registered"]


async def test_missing_signature_is_401(client: Client, services: Services) -> None:
    response = await post(client, meta_body("text"), {"content-type": "application/json"})

    assert response.status_code == 401
    assert response.json()["detail"] == "the X-Hub-Signature-256 header is missing"


async def test_malformed_json_is_400_problem(client: Client) -> None:
    body = b'{"object": "instagram", "entry": ['

    response = await post(client, body)

    assert response.status_code == 400
    problem = response.json()
    assert problem["status"] == 400
    assert "not valid JSON" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"object": "page", "entry": []}', "object 'page'"),
        (b'{"entry": []}', "object"),
        (b'{"object": "instagram", "entry": {}}', "entry"),
        (b"[1, 2]", "Expected `object`"),
    ],
)
async def test_body_that_is_not_an_instagram_webhook_is_400(
    client: Client, services: Services, body: bytes, detail: str
) -> None:
    response = await post(client, body)

    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert event_types(services) == ["Account.Registered"]


async def test_entries_for_an_account_we_do_not_serve_are_skipped(
    client: Client, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    body = meta_body("text").replace(ACCOUNT.encode(), b"17841499999999999")

    response = await post(client, body)

    assert response.status_code == 200
    assert event_types(services) == ["Account.Registered"]
    assert "17841499999999999" in caplog.text


async def test_dashboard_test_event_is_200_without_side_effects(
    client: Client, services: Services
) -> None:
    response = await post(client, meta_body("changes_test"))

    assert response.status_code == 200
    assert event_types(services) == ["Account.Registered"]


async def test_body_over_the_limit_is_413(client: Client, services: Services) -> None:
    body = b'{"object": "instagram", "entry": [], "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'

    response = await post(client, body)

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_subscription_is_confirmed_with_an_accounts_verify_token(client: Client) -> None:
    response = await client.get(
        "/webhooks/instagram",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"},
    )

    assert response.status_code == 200
    assert response.text == "42"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "chal-8f3e"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "chal-8f3e"},
        {},
    ],
)
async def test_subscription_is_refused_otherwise(client: Client, params: dict[str, str]) -> None:
    response = await client.get("/webhooks/instagram", params=params)

    assert response.status_code == 403
    assert "chal-8f3e" not in response.text  # the challenge is never echoed


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json()["status"] == "ready"


async def test_unknown_route_is_a_404_problem(client: Client) -> None:
    response = await client.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/healthz", {"GET"}),
        ("DELETE", "/webhooks/instagram", {"GET", "POST"}),
        ("PUT", "/metrics", {"GET"}),
    ],
)
async def test_a_method_the_route_does_not_take_is_a_405_problem_naming_those_it_does(
    client: Client, method: str, path: str, allowed: set[str]
) -> None:
    """RFC 9110 15.5.6: a 405 carries `Allow`, the methods the resource takes."""
    response = await client.request(method, path)

    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 405
    assert allowed <= {m.strip() for m in response.headers["allow"].split(",")}


async def test_secrets_never_appear_in_responses_or_logs(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    body = meta_body("text")
    responses = [
        await post(client, body),
        await post(client, body, signed_headers(body, "wrong")),
        await client.get("/webhooks/instagram", params={"hub.mode": "subscribe"}),
    ]

    seen = caplog.text + "".join(r.text for r in responses)
    assert APP_SECRET not in seen
    assert VERIFY_TOKEN not in seen


def deeply_nested(levels: int) -> bytes:
    """A webhook whose one item nests `levels` arrays: valid JSON Meta never sends."""
    return (
        b'{"object":"instagram","entry":[{"id":"'
        + ACCOUNT.encode()
        + b'","messaging":[{"sender":{"id":"'
        + PARTICIPANT.encode()
        + b'"},"recipient":{"id":"'
        + ACCOUNT.encode()
        + b'"},"timestamp":1767225600000,"x":'
        + b"[" * levels
        + b"]" * levels
        + b"}]}]}"
    )


@pytest.mark.parametrize("levels", [1_000, 100_000])
@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "bogus"])
async def test_deeply_nested_body_without_a_valid_signature_is_401_and_never_read(
    client: Client, services: Services, levels: int, signature: str | None
) -> None:
    body = deeply_nested(levels)
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-hub-signature-256"] = signature

    response = await post(client, body, headers)

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert event_types(services) == ["Account.Registered"]


@pytest.mark.parametrize("levels", [65, 1_000, 100_000])
async def test_deeply_nested_signed_body_is_400_naming_the_nesting(
    client: Client, services: Services, levels: int
) -> None:
    response = await post(client, deeply_nested(levels))

    assert response.status_code == 400, response.text
    assert "nested" in response.json()["detail"]
    assert event_types(services) == ["Account.Registered"]


async def test_nesting_meta_could_send_is_stored(client: Client, services: Services) -> None:
    body = deeply_nested(40)

    response = await post(client, body)

    assert response.status_code == 200, response.text
    assert "Conversation.UnrecognisedItemReceived" in event_types(services)


async def test_a_flood_of_rejected_bodies_writes_a_bounded_number_of_log_lines(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    body = deeply_nested(100_000)

    for _ in range(40):
        assert (await post(client, body, signed_headers(body, "bogus"))).status_code == 401
        assert (await post(client, body)).status_code == 400

    # (the test client's own httpx logs a line per request: not ours)
    ours = [r for r in caplog.records if not r.name.startswith("httpx")]
    lines = sum(len(r.getMessage().splitlines()) + bool(r.exc_info) * 50 for r in ours)
    assert lines <= 10, caplog.text[:2000]


@pytest.mark.parametrize("signature", [None, "wrong-secret"])
async def test_an_unsigned_or_wrongly_signed_body_gets_401_whether_its_account_is_served_or_not(
    client: Client, services: Services, signature: str | None
) -> None:
    served = meta_body("text")
    unserved = served.replace(ACCOUNT.encode(), b"17841499999999999")

    def headers(body: bytes) -> dict[str, str]:
        if signature is None:
            return {"content-type": "application/json"}
        return signed_headers(body, signature)

    answers = [await post(client, body, headers(body)) for body in (served, unserved)]

    assert [a.status_code for a in answers] == [401, 401]
    # the same answer, but for each request's own id
    assert {**answers[0].json(), "request_id": ""} == {**answers[1].json(), "request_id": ""}
    assert event_types(services) == ["Account.Registered"]
