"""The auditor's REST API on every backend: the event stream, conversations as of a moment,
and auditor keys that can read but never write."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient

from domain.conversation import Conversation
from domain.identity import conversation_id
from interfaces.composition import Services
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    bearer,
    event_types,
    issue_key,
    register_account,
)
from tests.support.webhooks import OTHER, deliver, text_body

Client = AsyncTestClient[Any]
CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
EVENTS = f"/api/v1/accounts/{ACCOUNT}/events"
STATE = f"/api/v1/accounts/{ACCOUNT}/conversations/{CONVERSATION}/state"
SECOND = "5500000000000002"


def lines(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


@pytest.fixture
def auditor(services: Services) -> dict[str, str]:
    return bearer(issue_key(services, "auditor", ACCOUNT, name="audit"))


@pytest.fixture
async def history(client: Client, services: Services) -> None:
    """Two conversations of the account, one of another account, an archive in between."""
    register_account(services, OTHER)
    await deliver(client, text_body("m-1", sent_at=1_000), text_body("m-2", sent_at=2_000))
    await deliver(client, text_body("o-1", sent_at=1_500, account=OTHER))
    await deliver(client, text_body("s-1", sent_at=2_500, participant=SECOND))
    admin = bearer(issue_key(services, "admin"))
    changed = await client.patch(
        f"/api/v1/accounts/{ACCOUNT}/conversations/{CONVERSATION}",
        headers=admin,
        json={"status": "archived"},
    )
    assert changed.status_code == 200, changed.text
    await deliver(client, text_body("m-3", sent_at=3_000))


async def test_an_auditor_streams_the_accounts_events_in_log_order(
    client: Client, auditor: dict[str, str], history: None
) -> None:
    events = lines(await client.get(EVENTS, headers=auditor))

    assert [e["type"] for e in events] == [
        "Account.Registered",
        "Conversation.Started",
        "Conversation.MessageReceived",
        "Conversation.MessageReceived",
        "Conversation.Started",
        "Conversation.MessageReceived",
        "Conversation.Archived",
        "Conversation.MessageReceived",
    ]
    positions = [e["position"] for e in events]
    assert positions == sorted(positions)
    assert set(events[0]) == {"position", "aggregate_id", "version", "type", "timestamp", "data"}
    assert events[0]["data"]["app_secret"].startswith("gAAAA")  # ciphertext, as stored
    assert [e["data"]["mid"] for e in events if "mid" in e["data"]] == ["m-1", "m-2", "s-1", "m-3"]
    versions = [e["version"] for e in events if e["aggregate_id"] == str(CONVERSATION)]
    assert versions == [1, 2, 3, 4, 5]


async def test_after_until_and_types_narrow_the_stream(
    client: Client, auditor: dict[str, str], history: None
) -> None:
    events = lines(await client.get(EVENTS, headers=auditor))
    # a moment between the second and the third message
    second, third = (e for e in events if e["data"].get("mid") in ("m-2", "s-1"))
    between = _midpoint(second["timestamp"], third["timestamp"])

    until = lines(await client.get(EVENTS, headers=auditor, params={"until": between}))
    after = lines(
        await client.get(EVENTS, headers=auditor, params={"after": str(second["position"])})
    )
    typed = lines(
        await client.get(
            EVENTS,
            headers=auditor,
            params=[("types", "Conversation.Archived,Account.Registered"), ("types", "")],
        )
    )

    assert until == events[: events.index(second) + 1]
    assert after == events[events.index(second) + 1 :]
    assert [e["type"] for e in typed] == ["Account.Registered", "Conversation.Archived"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (EVENTS, {"until": "yesterday"}, "until"),
        (EVENTS, {"until": "2026-01-01T10:00:00"}, "until"),
        (EVENTS, {"after": "-1"}, "after"),
        (EVENTS, {"after": "first"}, "after"),
        (EVENTS, {"types": "Conversation.Nonsense"}, "types"),
        (STATE, {"at": "noon"}, "at"),
        (STATE, {"at": "2026-01-01T10:00:00"}, "at"),
        (STATE, {"version": "0"}, "version"),
        (STATE, {"version": "99"}, "version"),
        (STATE, {"version": "2", "at": "2026-01-01T10:00:00Z"}, "version"),
    ],
)
async def test_bad_audit_parameters_are_422_naming_the_field(
    client: Client,
    auditor: dict[str, str],
    history: None,
    path: str,
    params: dict[str, str],
    field: str,
) -> None:
    response = await client.get(path, headers=auditor, params=params)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field
    assert field in response.json()["detail"]


async def test_the_audit_api_is_404_for_an_account_the_key_may_not_read(
    client: Client, services: Services, history: None
) -> None:
    other_auditor = bearer(issue_key(services, "auditor", OTHER))
    every_account = bearer(issue_key(services, "auditor"))
    other_conversation = conversation_id(OTHER, PARTICIPANT)

    assert (await client.get(EVENTS, headers=other_auditor)).status_code == 404
    assert (await client.get(STATE, headers=other_auditor)).status_code == 404
    assert (await client.get(EVENTS, headers={})).status_code == 401
    # a conversation of another account, through this account's path
    elsewhere = f"/api/v1/accounts/{ACCOUNT}/conversations/{other_conversation}/state"
    assert (await client.get(elsewhere, headers=every_account)).status_code == 404
    assert len(lines(await client.get(EVENTS, headers=every_account))) == 8


async def test_the_state_at_version_n_is_the_aggregate_at_version_n(
    client: Client, services: Services, auditor: dict[str, str], history: None
) -> None:
    for version in range(1, 6):
        response = await client.get(STATE, headers=auditor, params={"version": str(version)})
        assert response.status_code == 200, response.text
        state = response.json()
        aggregate: Conversation = services.ledger.repository.get(CONVERSATION, version=version)
        assert isinstance(aggregate, Conversation)

        assert state["version"] == aggregate.version == version
        assert state["conversation"]["status"] == aggregate.status
        mids = [key.removeprefix("message:") for key in aggregate.recorded]
        assert [m["mid"] for m in state["messages"]] == mids
        assert state["conversation"]["automation_paused"] is False


async def test_the_state_at_a_time_between_two_events_is_the_earlier_one(
    client: Client, auditor: dict[str, str], history: None
) -> None:
    events = lines(await client.get(EVENTS, headers=auditor))
    mine = [e for e in events if e["aggregate_id"] == str(CONVERSATION)]
    archived, latest = mine[3], mine[4]
    before_archive = _midpoint(mine[2]["timestamp"], archived["timestamp"])

    then = (await client.get(STATE, headers=auditor, params={"at": before_archive})).json()
    now = (await client.get(STATE, headers=auditor)).json()
    too_early = await client.get(STATE, headers=auditor, params={"at": "2001-01-01T00:00:00Z"})

    assert then["version"] == 3
    assert then["conversation"]["status"] == "active"
    assert [m["text"] for m in then["messages"]] == ["message m-1", "message m-2"]
    assert then["conversation"]["unread_count"] == 2
    assert now["version"] == latest["version"] == 5
    assert now["conversation"]["status"] == "archived"
    assert [m["mid"] for m in now["messages"]] == ["m-1", "m-2", "m-3"]
    assert too_early.status_code == 404


async def test_an_auditor_key_cannot_use_any_endpoint_that_writes(
    client: Client, services: Services, auditor: dict[str, str], history: None
) -> None:
    every_account = bearer(issue_key(services, "auditor"))
    before = event_types(services)
    tried = []

    for route in client.app.routes:
        path = route.path
        if not path.startswith("/api/"):
            continue
        for method in sorted(set(getattr(route, "methods", ())) - {"GET", "HEAD", "OPTIONS"}):
            url = _fill(path)
            for key in (auditor, every_account):
                response = await client.request(method, url, headers=key, json={"read": True})
                assert response.status_code == 403, (method, url, response.text)
                assert response.headers["content-type"] == "application/problem+json"
            tried.append((method, path))

    patch = "/api/v1/accounts/{account_id:str}/conversations/{conversation_id:uuid}"
    assert ("PATCH", patch) in tried
    assert event_types(services) == before


def _fill(path: str) -> str:
    values = {"account_id": ACCOUNT, "conversation_id": str(CONVERSATION)}

    def value(match: re.Match[str]) -> str:
        name, kind = match.group(1), match.group(2)
        if name in values:
            return values[name]
        return {"uuid": str(UUID(int=1)), "int": "1"}.get(kind, "x")

    return re.sub(r"\{(\w+):(\w+)\}", value, path)


def _midpoint(first: str, second: str) -> str:
    a, b = datetime.fromisoformat(first), datetime.fromisoformat(second)
    assert a < b
    return (a + (b - a) / 2).isoformat()
