"""The CRM's REST API over HTTP, on every backend: projections, keys, isolation, paging."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    bearer,
    event_types,
    eventually,
    issue_key,
    meta_body,
    meta_json,
    register_account,
)
from tests.support.webhooks import OTHER, deliver, text_body

Client = AsyncTestClient[Any]
CONVERSATION = str(conversation_id(ACCOUNT, PARTICIPANT))
BASE = f"/api/v1/accounts/{ACCOUNT}/conversations"


@pytest.fixture
def crm(services: Services) -> dict[str, str]:
    return bearer(issue_key(services, "account", ACCOUNT, name="crm"))


async def test_a_webhook_message_appears_in_the_messages_and_the_conversation_list(
    client: Client, crm: dict[str, str]
) -> None:
    await deliver(client, meta_body("text"))

    async def visible() -> Any:
        response = await client.get(f"{BASE}/{CONVERSATION}/messages", headers=crm)
        assert response.status_code == 200, response.text
        assert len(response.json()["messages"]) == 1
        return response.json()["messages"][0]

    message = await eventually(visible, timeout=1.0)
    assert message["direction"] == "inbound"
    assert message["kind"] == "text"
    assert message["text"] == meta_json("text")["entry"][0]["messaging"][0]["message"]["text"]

    listing = (await client.get(BASE, headers=crm)).json()
    [conversation] = listing["conversations"]
    assert conversation["id"] == CONVERSATION
    assert conversation["participant"]["id"] == PARTICIPANT
    assert conversation["unread_count"] == 1
    assert conversation["status"] == "active"
    assert conversation["reply_window_closes_at"] is not None
    assert listing["next_cursor"] is None


async def test_edits_reactions_and_unsends_show_on_the_message(
    client: Client, crm: dict[str, str]
) -> None:
    # the edit and unsend name text.json's message; they may come before it
    await deliver(client, meta_body("edit"), meta_body("text"), meta_body("unsend"))
    await deliver(client, meta_body("echo"), meta_body("reaction"))

    async def shown() -> list[dict[str, Any]]:
        response = await client.get(f"{BASE}/{CONVERSATION}/messages", headers=crm)
        # 404 until the conversation list has the conversation: retry, do not fail
        assert response.status_code == 200, response.text
        messages: list[dict[str, Any]] = response.json()["messages"]
        assert len(messages) == 2
        assert messages[1]["reactions"]
        return messages

    text, echo = await eventually(shown)
    edit = meta_json("edit")["entry"][0]["messaging"][0]["message_edit"]
    assert (text["edit_count"], text["unsent"]) == (int(edit["num_edit"]), True)
    assert echo["direction"] == "outbound"
    assert echo["reactions"][0]["emoji"] == "❤️"


async def test_without_a_valid_key_the_api_answers_401(client: Client, services: Services) -> None:
    token = issue_key(services, "account", ACCOUNT)
    revoked_id = token.split("_")[1]
    services.writer.run_now(services.api_keys.revoke(revoked_id, by="test"))

    for headers in ({}, {"authorization": "Basic abc"}, bearer("dml_nothere_x"), bearer(token)):
        response = await client.get(BASE, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_key_of_one_account_gets_404_on_every_endpoint_of_another(
    client: Client, services: Services
) -> None:
    # given account B with a conversation, and a key of account A
    register_account(services, OTHER)
    await deliver(client, text_body("b-1", sent_at=1, account=OTHER))
    other_conversation = str(conversation_id(OTHER, PARTICIPANT))
    key_a = bearer(issue_key(services, "account", ACCOUNT))
    admin = bearer(issue_key(services, "admin"))
    base_b = f"/api/v1/accounts/{OTHER}/conversations"
    await eventually(
        lambda: _ok(client.get(f"{base_b}/{other_conversation}", headers=admin)), timeout=2
    )

    # then every endpoint of B is a 404 for A's key, exactly like a missing account
    for method, path, body in [
        ("GET", base_b, None),
        ("GET", f"{base_b}/{other_conversation}", None),
        ("GET", f"{base_b}/{other_conversation}/messages", None),
        ("PATCH", f"{base_b}/{other_conversation}", {"status": "archived"}),
        ("GET", "/api/v1/accounts/17841499999999999/conversations", None),
    ]:
        response = await client.request(method, path, headers=key_a, json=body)
        assert response.status_code == 404, (method, path, response.text)
    # and A's key cannot reach B's conversation through A's own path either
    response = await client.get(f"{BASE}/{other_conversation}", headers=key_a)
    assert response.status_code == 404
    assert "archived" not in event_types(services)


async def _ok(response_coroutine: Any) -> None:
    response = await response_coroutine
    assert response.status_code == 200


async def test_patch_archives_blocks_reopens_and_marks_read_as_events(
    client: Client, services: Services, crm: dict[str, str]
) -> None:
    await deliver(client, meta_body("text"))
    await eventually(lambda: _ok(client.get(f"{BASE}/{CONVERSATION}", headers=crm)))

    archived = await client.patch(
        f"{BASE}/{CONVERSATION}", headers=crm, json={"status": "archived", "read": True}
    )
    assert archived.status_code == 200, archived.text
    assert (archived.json()["status"], archived.json()["unread_count"]) == ("archived", 0)
    assert (await client.get(BASE, headers=crm, params={"status": "archived"})).json()[
        "conversations"
    ]
    assert not (await client.get(BASE, headers=crm, params={"status": "active"})).json()[
        "conversations"
    ]

    blocked = await client.patch(f"{BASE}/{CONVERSATION}", headers=crm, json={"status": "blocked"})
    reopened = await client.patch(f"{BASE}/{CONVERSATION}", headers=crm, json={"status": "active"})
    assert (blocked.json()["status"], reopened.json()["status"]) == ("blocked", "active")
    assert event_types(services)[-4:] == [
        "Conversation.Archived",
        "Conversation.MarkedRead",
        "Conversation.Blocked",
        "Conversation.Reopened",
    ]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"status": "deleted"}, 400, None),
        ({"colour": "red"}, 400, None),
        ({}, 422, "status"),
    ],
)
async def test_a_bad_patch_is_refused_and_changes_nothing(
    client: Client,
    services: Services,
    crm: dict[str, str],
    body: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    await deliver(client, meta_body("text"))
    before = event_types(services)

    response = await client.patch(f"{BASE}/{CONVERSATION}", headers=crm, json=body)

    assert response.status_code in (status, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    if field:
        assert response.json()["field"] == field
    assert event_types(services) == before


async def test_an_auditor_key_reads_but_cannot_change(client: Client, services: Services) -> None:
    await deliver(client, meta_body("text"))
    auditor = bearer(issue_key(services, "auditor", ACCOUNT))
    await eventually(lambda: _ok(client.get(f"{BASE}/{CONVERSATION}", headers=auditor)))

    response = await client.patch(f"{BASE}/{CONVERSATION}", headers=auditor, json={"read": True})

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"status": "gone"}, "status"),
        ({"updated_since": "yesterday"}, "updated_since"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(
    client: Client, crm: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await client.get(BASE, headers=crm, params=params)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_conversations_page_newest_first_with_filters(
    client: Client, crm: dict[str, str]
) -> None:
    # given five participants who wrote in turn, the second of whom the business read
    participants = [f"55000000000001{i:02d}" for i in range(5)]
    for i, participant in enumerate(participants):
        await deliver(client, text_body(f"m-{i}", sent_at=1000 + i, participant=participant))
    second = str(conversation_id(ACCOUNT, participants[1]))

    async def all_listed() -> None:
        response = await client.get(BASE, headers=crm)
        assert response.status_code == 200
        assert len(response.json()["conversations"]) == 5

    await eventually(all_listed)
    await client.patch(f"{BASE}/{second}", headers=crm, json={"read": True})

    # when paging two at a time
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get(BASE, headers=crm, params=params)).json()
        seen += [c["participant"]["id"] for c in page["conversations"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # then each appears once, most recently changed first
    assert seen == [
        participants[1],
        participants[4],
        participants[3],
        participants[2],
        participants[0],
    ]
    unread = (await client.get(BASE, headers=crm, params={"unread": "true"})).json()
    assert participants[1] not in [c["participant"]["id"] for c in unread["conversations"]]
    future = (
        await client.get(BASE, headers=crm, params={"updated_since": "2999-01-01T00:00:00Z"})
    ).json()
    assert future["conversations"] == []


async def test_messages_page_in_both_directions_without_gaps_or_duplicates(
    client: Client, crm: dict[str, str]
) -> None:
    # given 45 messages delivered out of order
    sent = list(range(45))
    order = sent[::2] + sent[1::2]
    await deliver(client, *(text_body(f"m-{i:03d}", sent_at=10_000 + i) for i in order))

    async def all_there() -> None:
        response = await client.get(
            f"{BASE}/{CONVERSATION}/messages", headers=crm, params={"limit": "200"}
        )
        assert response.status_code == 200, response.text  # 404 until it is listed
        assert len(response.json()["messages"]) == 45

    await eventually(all_there)

    # when walking forwards ten at a time
    forward: list[str] = []
    prevs: list[str | None] = []
    cursor = None
    while True:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get(f"{BASE}/{CONVERSATION}/messages", headers=crm, params=params)
        ).json()
        forward += [m["mid"] for m in page["messages"]]
        prevs.append(page["prev_cursor"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # then the messages come in the order they were sent, each once
    assert forward == [f"m-{i:03d}" for i in sent]
    # and a page's prev_cursor walks back from its first message
    back = (
        await client.get(
            f"{BASE}/{CONVERSATION}/messages",
            headers=crm,
            params={"cursor": prevs[-1], "limit": "3"},
        )
    ).json()
    assert [m["mid"] for m in back["messages"]] == ["m-039", "m-038", "m-037"]
    newest = (
        await client.get(
            f"{BASE}/{CONVERSATION}/messages",
            headers=crm,
            params={"order": "newest_first", "limit": "2"},
        )
    ).json()
    assert [m["mid"] for m in newest["messages"]] == ["m-044", "m-043"]


async def test_openapi_documents_every_endpoint_and_docs_are_served(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    docs = await client.get("/docs", follow_redirects=True)

    assert schema["openapi"].startswith("3.1")
    paths = schema["paths"]
    assert "/webhooks/instagram" in paths
    conversations = "/api/v1/accounts/{account_id}/conversations"
    assert set(paths[conversations]) == {"get"}
    assert set(paths[conversations + "/{conversation_id}"]) == {"get", "patch"}
    assert "401" in paths[conversations]["get"]["responses"]
    assert docs.status_code == 200


async def test_every_error_the_openapi_documents_is_a_problem_as_answered(client: Client) -> None:
    """A client generated from /schema/openapi.json reads every error as the RFC 9457
    problem the API answers: Litestar's own 400 (`{"status_code", "detail", "extra"}` as
    application/json) is documented nowhere, since its validation errors are answered as
    422 problems and a malformed body as a 400 problem."""
    schema = (await client.get("/schema/openapi.json")).json()

    not_problems = [
        f"{method.upper()} {path} {status}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict)
        for status, response in operation.get("responses", {}).items()
        if int(status) >= 400 and set(response.get("content", {})) != {"application/problem+json"}
    ]
    assert not_problems == []

    webhooks = schema["paths"]["/webhooks/instagram"]
    assert {"200", "403"} <= set(webhooks["get"]["responses"])
    assert {"200", "400", "401", "413", "503"} <= set(webhooks["post"]["responses"])
    assert {"200", "422", "503"} <= set(schema["paths"]["/readyz"]["get"]["responses"])
