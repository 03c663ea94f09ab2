"""Comments to DMs over HTTP: a signed `comments` webhook with a rule's keyword gets one
private reply at the (fake) Graph API, in the commenter's DM history with a link to the
comment; the CRM gets `comment.received` and lists comments; Meta's 7-day limit and the
handover protocol hold automation back; a story mention opens the reply window."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from application.delivery import Action, classify
from domain.identity import conversation_id
from domain.media import DAY_MS
from interfaces.composition import Services
from tests.conftest import (
    ACCESS_TOKEN,
    ACCOUNT,
    PARTICIPANT,
    meta_json,
    signed_headers,
    stored_events,
)
from tests.support.clock import MovableClock
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi

Client = AsyncTestClient[Any]
BASE = f"/api/v1/accounts/{ACCOUNT}"
POST = "17900000000000001"
OTHER_POST = "17900000000000002"
COMMENTER = "5500000000000009"
COMMENTER_CONVERSATION = conversation_id(ACCOUNT, COMMENTER)
PRICE_RULE = {
    "name": "price on the launch post",
    "triggers": [{"type": "comment", "value": "price", "media_id": POST}],
    "reply": "Hi {username}! The price list: https://shop.example/prices",
    "public_reply": "Sent you a DM!",
}


@pytest.fixture
def services(services_with_crm: Services) -> Services:
    """Sending to the fake Graph API, delivering to the fake CRM (`tests/e2e/conftest.py`)."""
    return services_with_crm


def comment(
    comment_id: str,
    text: str,
    *,
    media: str = POST,
    author: str = COMMENTER,
    field: str = "comments",
    at: int | None = None,
) -> bytes:
    """A `comments` (or `live_comments`) webhook as Meta sends it for Instagram Login."""
    return json.dumps(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": ACCOUNT,
                    "time": (at if at is not None else int(time.time() * 1000)) // 1000,
                    "changes": [
                        {
                            "field": field,
                            "value": {
                                "from": {"id": author, "username": "bob"},
                                "media": {"id": media, "media_product_type": "FEED"},
                                "id": comment_id,
                                "text": text,
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def messaging(item: dict[str, Any], *, standby: bool = False) -> bytes:
    body = {
        "object": "instagram",
        "entry": [
            {
                "id": ACCOUNT,
                "time": int(time.time() * 1000),
                "standby" if standby else "messaging": [item],
            }
        ],
    }
    return json.dumps(body).encode()


def dm(text: str, mid: str) -> dict[str, Any]:
    return {
        "sender": {"id": COMMENTER},
        "recipient": {"id": ACCOUNT},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": mid, "text": text},
    }


def handover(kind: str, **control: str) -> dict[str, Any]:
    return {
        "sender": {"id": COMMENTER},
        "recipient": {"id": ACCOUNT},
        "timestamp": int(time.time() * 1000),
        kind: control,
    }


async def deliver(api: Client, *bodies: bytes) -> None:
    for body in bodies:
        response = await api.post("/webhooks/instagram", content=body, headers=signed_headers(body))
        assert response.status_code == 200, response.text


async def step(services: Services, rounds: int = 3) -> None:
    """Let the projections, the policy and the dispatcher do what is due now."""
    for _ in range(rounds):
        services.read_models.catch_up()
        await services.dispatcher.drain()
    services.read_models.catch_up()


def private_replies(graph: FakeGraphApi) -> list[dict[str, Any]]:
    return [r for r in graph.requests if "comment_id" in (r["body"].get("recipient") or {})]


def of_type(services: Services, kind: str) -> list[dict[str, Any]]:
    return [data for k, data in stored_events(services) if k == kind]


async def add_rule(api: Client, admin: dict[str, str], rule: dict[str, Any]) -> None:
    response = await api.post(f"{BASE}/rules", headers=admin, json=rule)
    assert response.status_code == 201, response.text


async def test_a_keyword_comment_on_a_post_gets_exactly_one_private_reply(
    api: Client, services: Services, graph: FakeGraphApi, crm: FakeCrm, admin: dict[str, str]
) -> None:
    # given a rule answering "price" on the launch post with a private and a public reply
    await add_rule(api, admin, PRICE_RULE)
    graph.commenters["c-1"] = COMMENTER

    # when Meta delivers the comment twice, the person comments again, and someone
    # comments "price" on another post
    await deliver(api, comment("c-1", "Price please?"), comment("c-1", "Price please?"))
    await deliver(api, comment("c-2", "What is the price??"))
    await deliver(api, comment("c-3", "price", media=OTHER_POST, author="5500000000000010"))
    await step(services)

    # then Meta got one private reply, to the first comment, in Meta's shape
    [sent] = private_replies(graph)
    assert sent["path"] == f"/v21.0/{ACCOUNT}/messages"
    assert sent["body"] == {
        "recipient": {"comment_id": "c-1"},
        "message": {"text": "Hi bob! The price list: https://shop.example/prices"},
    }
    assert sent["token"] == ACCESS_TOKEN
    # and the public reply under the comment
    assert graph.comment_replies == [
        {"comment_id": "c-1", "message": "Sent you a DM!", "id": graph.comment_replies[0]["id"]}
    ]
    # it is the commenter's conversation's message, linked to the comment, and sent
    page = await api.get(f"{BASE}/conversations/{COMMENTER_CONVERSATION}/messages", headers=admin)
    assert page.status_code == 200, page.text
    [message] = page.json()["messages"]
    assert message["direction"] == "outbound"
    assert message["comment"] == {"comment_id": "c-1", "media_id": POST}
    assert message["delivery_status"] == "sent"
    assert message["mid"] == sent_message_id(graph, "c-1")
    # the CRM got each comment once, verified
    comments = [d["payload"] for d in crm.delivered() if d["payload"]["type"] == "comment.received"]
    assert sorted(c["data"]["comment_id"] for c in comments) == ["c-1", "c-2", "c-3"]
    first = next(c["data"] for c in comments if c["data"]["comment_id"] == "c-1")
    assert first["author"] == {"id": COMMENTER, "username": "bob"}
    assert (first["media_id"], first["text"], first["live"]) == (POST, "Price please?", False)
    assert crm.rejected == []
    # and lists the post's comments, newest first, with what automation did
    listed = await api.get(f"{BASE}/media/{POST}/comments", headers=admin)
    assert listed.status_code == 200, listed.text
    rows = listed.json()["comments"]
    assert [c["id"] for c in rows] == ["c-2", "c-1"]
    assert rows[1]["private_reply_id"] is not None
    assert rows[1]["author"]["conversation_id"] == str(COMMENTER_CONVERSATION)
    assert rows[0]["skipped_reason"] == "commenter_already_replied"
    assert (await api.get(f"{BASE}/media/{OTHER_POST}/comments", headers=admin)).json()["comments"][
        0
    ]["private_reply_id"] is None


def sent_message_id(graph: FakeGraphApi, comment_id: str) -> str:
    return str(graph.private_replies[comment_id]["message_id"])


async def test_comments_are_listed_in_pages(
    api: Client, services: Services, admin: dict[str, str]
) -> None:
    await deliver(api, *(comment(f"c-{i}", f"nice {i}") for i in range(5)))
    await step(services)

    first = (await api.get(f"{BASE}/media/{POST}/comments?limit=3", headers=admin)).json()
    rest = (
        await api.get(
            f"{BASE}/media/{POST}/comments?limit=3&cursor={first['next_cursor']}", headers=admin
        )
    ).json()

    assert [c["id"] for c in first["comments"]] == ["c-4", "c-3", "c-2"]
    assert [c["id"] for c in rest["comments"]] == ["c-1", "c-0"]
    assert rest["next_cursor"] is None


async def test_8_days_after_a_comment_no_private_reply_goes(
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    admin: dict[str, str],
    clock: MovableClock,
) -> None:
    await add_rule(api, admin, PRICE_RULE)
    # a comment Meta delivered (and dmledger stored) 8 days ago, decided only now
    clock.stop()
    await deliver(api, comment("c-1", "price?", at=clock.now_ms()))
    clock.advance(8 * DAY_MS)
    await step(services)

    assert private_replies(graph) == []
    [skipped] = of_type(services, "Media.CommentReplySkipped")
    assert skipped["reason"] == "comment_too_old"


async def test_a_private_reply_queued_in_time_but_not_sent_within_7_days_is_refused(
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    admin: dict[str, str],
    clock: MovableClock,
) -> None:
    await add_rule(api, admin, PRICE_RULE)
    clock.stop()
    await deliver(api, comment("c-1", "price?", at=clock.now_ms()))
    services.read_models.catch_up()  # decided and queued, not sent (the dispatcher was down)
    clock.advance(7 * DAY_MS + 1)
    await step(services)

    assert private_replies(graph) == []
    [failed] = of_type(services, "Conversation.ReplyFailed")
    assert failed["error_class"] == "refused"
    assert "7 days" in failed["message"]


async def test_the_fake_graph_api_refuses_a_second_private_reply_to_a_comment_as_meta_does(
    services: Services, graph: FakeGraphApi
) -> None:
    send = services.instagram.send_private_reply
    first = await send(
        ig_account_id=ACCOUNT, access_token=ACCESS_TOKEN, comment_id="c-1", text="hi"
    )
    second = await send(
        ig_account_id=ACCOUNT, access_token=ACCESS_TOKEN, comment_id="c-1", text="hi again"
    )

    assert classify(first) == Action.SENT
    assert second.error is not None
    assert second.error.code == 10900
    assert classify(second) == Action.TERMINAL


async def test_while_another_app_owns_the_thread_automation_holds(
    api: Client, services: Services, graph: FakeGraphApi, admin: dict[str, str]
) -> None:
    await add_rule(
        api,
        admin,
        {"name": "hi", "triggers": [{"type": "keyword", "value": "hello"}], "reply": "Hi!"},
    )
    await add_rule(api, admin, PRICE_RULE)
    # another app (a live-agent inbox) takes the thread
    taken = handover("take_thread_control", previous_owner_app_id="1", new_owner_app_id="2")
    await deliver(api, messaging(taken))
    # its messages reach us on standby; a comment of the same person gets no DM either
    await deliver(api, messaging(dm("hello", "m-1"), standby=True))
    await deliver(api, messaging(dm("hello again", "m-2")))
    await deliver(api, comment("c-1", "price?"))
    await step(services)

    assert graph.sent == []
    reasons = [s["reason"] for s in of_type(services, "Conversation.AutoReplySkipped")]
    assert reasons == ["thread_owned_by_another_app"] * 2
    [skipped] = of_type(services, "Media.CommentReplySkipped")
    assert skipped["reason"] == "thread_owned_by_another_app"
    page = await api.get(f"{BASE}/conversations/{COMMENTER_CONVERSATION}/messages", headers=admin)
    assert [(m["text"], m["standby"]) for m in page.json()["messages"]] == [
        ("hello", True),
        ("hello again", False),
    ]

    # when the thread is passed back, automation answers again
    passed = handover("pass_thread_control", previous_owner_app_id="2", new_owner_app_id="1")
    await deliver(api, messaging(passed), messaging(dm("hello there", "m-3")))
    await step(services)

    assert [s["body"]["message"]["text"] for s in graph.sent] == ["Hi!"]
    changes = of_type(services, "Conversation.ThreadControlChanged")
    assert [c["action"] for c in changes] == ["take", "pass"]


async def test_an_account_that_is_not_the_primary_receiver_holds_automation_until_passed(
    api: Client, services: Services, graph: FakeGraphApi, admin: dict[str, str]
) -> None:
    await add_rule(
        api,
        admin,
        {"name": "hi", "triggers": [{"type": "keyword", "value": "hello"}], "reply": "Hi!"},
    )
    changed = await api.patch(BASE, headers=admin, json={"settings": {"primary_receiver": False}})
    assert changed.status_code == 200, changed.text

    await deliver(api, messaging(dm("hello", "m-1")))
    await step(services)
    assert graph.sent == []

    passed = handover("pass_thread_control", previous_owner_app_id="2", new_owner_app_id="1")
    await deliver(api, messaging(passed), messaging(dm("hello?", "m-2")))
    await step(services)
    assert [s["body"]["message"]["text"] for s in graph.sent] == ["Hi!"]


async def test_a_story_mention_opens_the_reply_window_like_a_message(
    api: Client, services: Services, graph: FakeGraphApi, admin: dict[str, str]
) -> None:
    body = meta_json("story_mention")
    body["entry"][0]["messaging"][0]["timestamp"] = int(time.time() * 1000)
    await deliver(api, json.dumps(body).encode())
    await step(services)
    conversation = conversation_id(ACCOUNT, PARTICIPANT)

    response = await api.post(
        f"{BASE}/conversations/{conversation}/replies",
        headers={**admin, "Idempotency-Key": "mention-1"},
        json={"text": "Thanks for the mention!"},
    )
    await step(services)

    assert response.status_code == 202, response.text
    assert [s["body"]["message"]["text"] for s in graph.sent] == ["Thanks for the mention!"]


async def test_erasing_a_commenter_erases_their_comments_everywhere(
    api: Client, services: Services, database_url: str, admin: dict[str, str]
) -> None:
    if database_url.startswith("memory"):
        pytest.skip("memory persistence keeps no sealed content (no vault)")
    await deliver(
        api,
        comment("c-1", "my phone is 0170 1234567"),
        comment("c-2", "nice", author="5500000000000010"),
    )
    await step(services)

    erased = await api.delete(f"{BASE}/participants/{COMMENTER}", headers=admin)
    await step(services)

    assert erased.status_code == 200, erased.text
    assert erased.json()["destroyed_keys"] == 1
    rows = (await api.get(f"{BASE}/media/{POST}/comments", headers=admin)).json()["comments"]
    assert [(c["id"], c["text"], c["erased"]) for c in rows] == [
        ("c-2", "nice", False),
        ("c-1", None, True),
    ]
    bodies = [
        json.loads(d["body"])
        for d in services.delivery_queue.deliveries(
            ACCOUNT, status=None, limit=100, before_position=None
        )
        if d["kind"] == "comment.received"
    ]
    assert sorted((b["data"]["comment_id"], b["data"]["text"]) for b in bodies) == [
        ("c-1", None),
        ("c-2", "nice"),
    ]


async def test_a_live_comment_gets_a_private_reply_from_a_live_comment_rule(
    api: Client, services: Services, graph: FakeGraphApi, admin: dict[str, str]
) -> None:
    await add_rule(
        api,
        admin,
        {
            "name": "live giveaway",
            "triggers": [{"type": "live_comment", "value": "win"}],
            "reply": "You are in the draw, {username}!",
        },
    )

    await deliver(api, comment("c-1", "I want to win", field="live_comments"))
    await deliver(api, comment("c-2", "I want to win", author="5500000000000010"))
    await step(services)

    assert [
        (r["body"]["recipient"], r["body"]["message"]["text"]) for r in private_replies(graph)
    ] == [({"comment_id": "c-1"}, "You are in the draw, bob!")]
    rows = (await api.get(f"{BASE}/media/{POST}/comments", headers=admin)).json()["comments"]
    assert [(c["id"], c["live"]) for c in rows] == [("c-2", False), ("c-1", True)]


async def test_private_replies_beyond_the_hourly_limit_wait_for_the_next_hour(
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    admin: dict[str, str],
    clock: MovableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Meta's 750 an hour, made 2 so that the test counts rather than sends 751
    monkeypatch.setattr("application.instagram_sender.PRIVATE_REPLIES_PER_HOUR", 2)
    await add_rule(api, admin, PRICE_RULE)
    people = [f"55000000000001{i:02d}" for i in range(3)]

    await deliver(api, *(comment(f"c-{i}", "price?", author=p) for i, p in enumerate(people)))
    await step(services)
    assert len(private_replies(graph)) == 2

    clock.advance(60_000)  # a minute on: the hour is not over, the third still waits
    await step(services)
    assert len(private_replies(graph)) == 2

    clock.advance(3_600_000)
    await step(services)
    assert sorted(r["body"]["recipient"]["comment_id"] for r in private_replies(graph)) == [
        "c-0",
        "c-1",
        "c-2",
    ]


async def test_a_comment_signed_with_another_secret_is_refused_and_nothing_stored(
    api: Client, services: Services
) -> None:
    body = comment("c-1", "price?")

    response = await api.post(
        "/webhooks/instagram", content=body, headers=signed_headers(body, "not-the-app-secret")
    )

    assert response.status_code == 401
    assert of_type(services, "Media.CommentReceived") == []


async def test_a_comment_without_its_media_is_a_400_naming_the_field(
    api: Client, services: Services
) -> None:
    body = json.loads(comment("c-1", "price?"))
    del body["entry"][0]["changes"][0]["value"]["media"]
    raw = json.dumps(body).encode()

    response = await api.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "entry[0].changes[0].value.media.id" in response.json()["detail"]
    assert of_type(services, "Media.CommentReceived") == []


async def test_the_rules_dry_run_tells_which_rule_answers_a_comment(
    api: Client, services: Services, admin: dict[str, str]
) -> None:
    await add_rule(api, admin, PRICE_RULE)

    def trial(**body: Any) -> Any:
        return api.post(f"{BASE}/rules/test", headers=admin, json=body)

    on_post = await trial(kind="comment", text="price?", media_id=POST, username="bob")
    elsewhere = await trial(kind="comment", text="price?", media_id=OTHER_POST)
    no_media = await trial(kind="comment", text="price?")

    assert on_post.status_code == 200, on_post.text
    assert (on_post.json()["reply"], on_post.json()["public_reply"]) == (
        "Hi bob! The price list: https://shop.example/prices",
        "Sent you a DM!",
    )
    assert elsewhere.json()["matched"] is False
    assert no_media.status_code == 422
    assert "media_id" in no_media.text
    assert of_type(services, "Media.CommentReceived") == []


async def test_the_comments_read_model_is_what_the_log_makes_of_it(
    api: Client, services: Services, graph: FakeGraphApi, database_url: str, admin: dict[str, str]
) -> None:
    from application.audit import AuditLog
    from projections.audit_check import check_account

    await add_rule(api, admin, PRICE_RULE)
    await deliver(api, comment("c-1", "price?"), comment("c-2", "price!"))
    await deliver(api, comment("c-3", "nice", author="5500000000000010"))
    if not database_url.startswith("memory"):
        assert (await api.delete(f"{BASE}/participants/5500000000000010", headers=admin)).is_success
    await step(services)

    checks = check_account(services.read_models, AuditLog(services.ledger), ACCOUNT)

    stream = await api.get(f"{BASE}/events", headers=admin)
    types = [json.loads(line)["type"] for line in stream.text.splitlines()]
    assert types.count("Media.CommentReceived") == 3
    assert "Media.PrivateReplyClaimed" in types
    comments = next(c for c in checks if c.projection == "comments")
    assert "media_comments" not in comments.skipped_tables
    assert comments.rows == 3
    assert [(c.projection, c.differences) for c in checks if not c.identical] == []
