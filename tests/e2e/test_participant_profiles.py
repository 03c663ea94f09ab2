"""Knowing the participant: the user profile API is asked on a conversation's first
message, the answer (or Meta's refusal) is recorded, and the CRM, the conversation list and
the message history carry the participant's username and name. Through HTTP, a fake Graph
API answering with Meta's shapes, and a fake CRM verifying with `standardwebhooks`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from interfaces.http.app import create_app
from projections.parked import parked_events
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    issue_key,
    register_account,
    stored_events,
)
from tests.support.clock import MovableClock
from tests.support.conversations import step
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi
from tests.support.rules import definition
from tests.support.webhooks import deliver, from_participant, message

Client = AsyncTestClient[Any]
CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
BASE = f"/api/v1/accounts/{ACCOUNT}"
STRANGER = "5500000000000099"
"""A participant the fake Graph API will not describe (Meta refuses the lookup)."""
WEEK = 7 * 24 * 3_600_000


@pytest.fixture
def services(services_with_crm: Services) -> Services:
    """Sending to the fake Graph API, delivering to the fake CRM (`tests/e2e/conftest.py`)."""
    return services_with_crm


def delivered(crm: FakeCrm, kind: str) -> list[dict[str, Any]]:
    return [d["payload"]["data"] for d in crm.delivered() if d["payload"]["type"] == kind]


def profile_lookups(graph: FakeGraphApi, participant: str = PARTICIPANT) -> list[dict[str, Any]]:
    return [r for r in graph.requests if r["path"].endswith(f"/{participant}")]


def of_type(services: Services, kind: str) -> list[dict[str, Any]]:
    return [data for k, data in stored_events(services) if k == kind]


async def test_the_crm_sees_the_participants_username_and_name_once_the_profile_is_known(
    api: Client, services: Services, crm: FakeCrm, graph: FakeGraphApi
) -> None:
    # given a conversation's first message (no rule needs the profile)
    await deliver(api, message("hello", "m-1"))
    await step(services)

    # then the profile, looked up once, reaches the CRM as a conversation update
    [update] = delivered(crm, "conversation.updated")
    assert update["change"] == "ParticipantProfileRecorded"
    assert update["participant"] == {"id": PARTICIPANT, "username": "anna", "name": "Anna Schmidt"}
    [first] = delivered(crm, "message.received")
    assert first["participant"] == {"id": PARTICIPANT}

    # and the next message carries it, without another lookup
    await deliver(api, message("still there?", "m-2"))
    await step(services)
    second = delivered(crm, "message.received")[1]
    assert second["mid"] == "m-2"
    assert second["participant"] == {"id": PARTICIPANT, "username": "anna", "name": "Anna Schmidt"}
    assert len(profile_lookups(graph)) == 1
    [recorded] = of_type(services, "Conversation.ParticipantProfileRecorded")
    assert recorded["profile"] == {
        "name": "Anna Schmidt",
        "username": "anna",
        "profile_pic": "https://cdn.example/anna.jpg",
        "follower_count": 1234,
        "is_user_follow_business": True,
        "is_business_follow_user": False,
        "is_verified_user": False,
    }


async def test_the_conversation_list_and_message_history_show_the_participant(
    api: Client, services: Services, key: dict[str, str]
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)

    listed = await api.get(f"{BASE}/conversations", headers=key)
    assert listed.status_code == 200, listed.text
    [conversation] = listed.json()["conversations"]
    assert conversation["participant"] == {
        "id": PARTICIPANT,
        "username": "anna",
        "name": "Anna Schmidt",
        "profile_picture_url": "https://cdn.example/anna.jpg",
        "follower_count": 1234,
        "follows_business": True,
        "verified": False,
    }
    history = await api.get(f"{BASE}/conversations/{CONVERSATION}/messages", headers=key)
    assert history.status_code == 200, history.text
    participant = history.json()["participant"]
    assert (participant["username"], participant["name"]) == ("anna", "Anna Schmidt")


async def test_a_refused_lookup_is_recorded_and_not_asked_again(
    api: Client, services: Services, crm: FakeCrm, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    # given Meta refuses to describe this participant
    await deliver(api, from_participant("hello", "m-1", STRANGER))
    await step(services)
    await deliver(api, from_participant("hello again", "m-2", STRANGER))
    await step(services)

    # then the refusal is recorded once, and the lookup was made once
    [refused] = of_type(services, "Conversation.ParticipantProfileRefused")
    assert refused["code"] == 100
    assert len(profile_lookups(graph, STRANGER)) == 1
    # and the CRM and the list know the participant by id only
    assert [d["participant"] for d in delivered(crm, "message.received")] == [{"id": STRANGER}] * 2
    listed = (await api.get(f"{BASE}/conversations", headers=key)).json()["conversations"]
    assert listed[0]["participant"]["username"] is None


async def test_a_profile_older_than_a_week_is_looked_up_again_at_the_next_message(
    api: Client, services: Services, crm: FakeCrm, graph: FakeGraphApi, clock: MovableClock
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)

    # when the participant renames themselves and writes again a week later
    graph.profiles[PARTICIPANT] = {**graph.profiles[PARTICIPANT], "username": "anna.s"}
    clock.advance(WEEK)
    await deliver(api, message("me again", "m-2"))
    await step(services)

    # then the new username is recorded and the CRM told
    assert len(profile_lookups(graph)) == 2
    updates = delivered(crm, "conversation.updated")
    assert [u["participant"].get("username") for u in updates] == ["anna", "anna.s"]


async def test_the_console_shows_the_participants_name_escaped(
    services: Services, graph: FakeGraphApi
) -> None:
    graph.profiles[PARTICIPANT] = {**graph.profiles[PARTICIPANT], "name": "Anna <b>S</b>"}
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app, base_url="http://console.test") as console:
        await deliver(console, message("hello", "m-1"))
        await step(services)
        token = issue_key(services, "account", ACCOUNT, name="console")
        signed_in = await console.post(
            "/console/login", data={"api_key": token}, follow_redirects=False
        )
        assert signed_in.status_code == 303, signed_in.text

        listed = await console.get(f"/console/accounts/{ACCOUNT}/conversations")
        thread = await console.get(f"/console/accounts/{ACCOUNT}/conversations/{CONVERSATION}")

    for page in (listed, thread):
        assert page.status_code == 200, page.text
        assert "@anna" in page.text
        assert "Anna &lt;b&gt;S&lt;/b&gt;" in page.text


async def test_a_reply_names_the_participant_from_their_sealed_profile_after_a_restart(
    database_url: str, make_services: Callable[..., Services], graph: FakeGraphApi
) -> None:
    if database_url.startswith("memory"):
        pytest.skip("a restart keeps nothing in memory")
    # given a participant whose profile was looked up on their first message
    rules = [
        {"name": "hello", "triggers": [{"type": "keyword", "value": "hello"}], "reply": "Hi!"},
        {
            "name": "hours",
            "triggers": [{"type": "keyword", "value": "hours"}],
            "reply": "{first_name}, we open at nine.",
        },
    ]
    first = make_services(database_url, graph_api_url=graph.url)
    register_account(first)
    for rule in rules:
        first.writer.run_now(first.rules.add(ACCOUNT, definition(rule), by="test"))
    async with AsyncTestClient(
        app=create_app(first, run_projections=False, run_dispatcher=False)
    ) as api:
        await deliver(api, message("hello", "m-1"))
        await step(first)
    first.close()

    # when, after a restart (nothing kept in memory), a rule answers with their first name
    again = make_services(database_url, graph_api_url=graph.url)
    async with AsyncTestClient(
        app=create_app(again, run_projections=False, run_dispatcher=False)
    ) as api:
        await deliver(api, message("your hours?", "m-2"))
        await step(again)

    # then the name comes from the recorded profile (sealed in its event), not a new lookup
    assert len(profile_lookups(graph)) == 1
    texts = [
        r["body"]["message"]["text"] for r in graph.requests if r["path"].endswith("/messages")
    ]
    assert texts == ["Hi!", "Anna, we open at nine."]


async def test_a_profile_with_a_username_longer_than_instagrams_stops_no_read_model(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    # given a Graph API whose answer names the participant with a 100-character username
    graph.profiles[PARTICIPANT] = {**graph.profiles[PARTICIPANT], "username": "a" * 100}

    # when the participant writes and the read models follow
    await deliver(api, message("hello", "m-1"))
    await step(services)
    for name in services.read_models.rebuildable():
        services.read_models.wait_for(name)

    # then nothing is parked, and the conversation is listed with the rest of the profile
    assert parked_events(services.read_models.message_history.engine) == []
    [conversation] = (await api.get(f"{BASE}/conversations", headers=key)).json()["conversations"]
    assert conversation["participant"]["name"] == "Anna Schmidt"
    assert conversation["participant"]["username"] is None
