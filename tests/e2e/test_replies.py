"""Replies a CRM can follow: refused at once when Meta would refuse them, readable the
moment they are accepted, and a stored change never answered with an error."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    bearer,
    event_types,
    issue_key,
    meta_json,
    signed_headers,
)

Client = AsyncTestClient[Any]
CONVERSATION = str(conversation_id(ACCOUNT, PARTICIPANT))
BASE = f"/api/v1/accounts/{ACCOUNT}/conversations/{CONVERSATION}"
DAY_MS = 24 * 3_600_000


@pytest.fixture
async def behind(services: Services) -> AsyncIterator[Client]:
    """The API of a web process whose read models nobody follows (`serve --no-projections`
    and no `project` running): they stay behind whatever is stored."""
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as client:
        yield client


async def deliver(client: Client, kind: str = "text", *, sent_at: int | None = None) -> None:
    body = meta_json(kind)
    item = body["entry"][0]["messaging"][0]
    item["timestamp"] = sent_at if sent_at is not None else int(time.time() * 1000)
    raw = json.dumps(body).encode()
    response = await client.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    assert response.status_code == 200, response.text


async def reply(client: Client, services: Services, text: str, token: str | None = None) -> Any:
    token = token or issue_key(services, "account", ACCOUNT)
    headers = {**bearer(token), "idempotency-key": "k-1"}
    return await client.post(f"{BASE}/replies", json={"text": text}, headers=headers)


async def test_the_status_url_answers_queued_the_moment_the_reply_is_accepted(
    behind: Client, services: Services
) -> None:
    await deliver(behind)

    accepted = await reply(behind, services, "Yes, we ship to Munich.")
    status = await behind.get(
        accepted.headers["location"], headers=bearer(issue_key(services, "account", ACCOUNT))
    )

    assert accepted.status_code == 202, accepted.text
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "queued"
    assert status.json()["reply_id"] == accepted.json()["reply_id"]


async def test_a_stored_change_is_answered_even_when_the_read_models_are_behind(
    behind: Client, services: Services
) -> None:
    await deliver(behind)
    key = bearer(issue_key(services, "account", ACCOUNT))

    resumed = await behind.post(f"{BASE}/resume", headers=key)
    archived = await behind.patch(BASE, json={"status": "archived"}, headers=key)

    for answer in (resumed, archived):
        assert answer.status_code == 202, answer.text
        assert answer.headers["dmledger-read-models"] == "behind"
        assert answer.json()["conversation_id"] == CONVERSATION
    assert "Conversation.Archived" in event_types(services)


@pytest.mark.parametrize(
    ("setup", "text", "field", "detail"),
    [
        ("recent", "x" * 1001, "text", "1001 bytes"),
        ("eight_days_ago", "Hello again", "conversation", "more than 7 days"),
        ("echo_only", "Hello first", "conversation", "never written"),
    ],
)
async def test_a_reply_meta_would_refuse_is_a_422_at_once(
    client: Client, services: Services, setup: str, text: str, field: str, detail: str
) -> None:
    # given a conversation whose state makes Meta refuse the reply
    if setup == "recent":
        await deliver(client)
    elif setup == "eight_days_ago":
        await deliver(client, sent_at=int(time.time() * 1000) - 8 * DAY_MS)
    else:
        await deliver(client, "echo")  # the business wrote first, from the Instagram app
    token = issue_key(services, "account", ACCOUNT)

    response = await reply(client, services, text, token)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert detail in response.json()["detail"]
    stored = event_types(services)
    assert "Conversation.ReplyQueued" not in stored
    assert "Conversation.AutomationPaused" not in stored or setup == "echo_only"
