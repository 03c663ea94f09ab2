"""The account's entry points end to end: ice breakers and a persistent menu set over REST,
pushed by the dispatcher to the fake Graph API's `messenger_profile`, Meta's answer recorded
and shown; a tap on an ice breaker answered by a rule."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from application.api_keys import IssuedKey
from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import (
    ACCESS_TOKEN,
    ACCOUNT,
    PARTICIPANT,
    bearer,
    eventually,
    issue_key,
    meta_json,
    signed_headers,
    stored_events,
)
from tests.support.clock import MovableClock
from tests.support.fake_graph import TEMPORARY, TOKEN_EXPIRED, FakeGraphApi, invalid_parameter

Client = AsyncTestClient[Any]
BASE = f"/api/v1/accounts/{ACCOUNT}"
ICE = {
    "ice_breakers": [
        {
            "locale": "default",
            "call_to_actions": [
                {"question": "What are your opening hours?", "payload": "ICEBREAKER_OPENING_HOURS"},
                {"question": "Do you ship abroad?", "payload": "ICEBREAKER_SHIPPING"},
            ],
        },
        {
            "locale": "fr_FR",
            "call_to_actions": [
                {"question": "Quels sont vos horaires ?", "payload": "ICEBREAKER_OPENING_HOURS"}
            ],
        },
    ]
}
MENU = {
    "persistent_menu": [
        {
            "locale": "default",
            "call_to_actions": [
                {"type": "postback", "title": "Talk to an agent", "payload": "CARE_HELP"},
                {"type": "web_url", "title": "Shop now", "url": "https://shop.example/"},
            ],
        }
    ]
}
PROFILE_PATH = f"/v21.0/{ACCOUNT}/messenger_profile"


@pytest.fixture
def services(services_with_graph: Services) -> Services:
    """Sending to the fake Graph API (`tests/e2e/conftest.py`)."""
    return services_with_graph


@pytest.fixture
def admin_key(services: Services) -> IssuedKey:
    command = services.api_keys.issue(name="ops", role="admin", ig_account_id=None, by="test")
    return services.writer.run_now(command)


@pytest.fixture
def admin(admin_key: IssuedKey) -> dict[str, str]:
    return bearer(admin_key.token)


async def test_serve_with_its_dispatcher_pushes_a_change_at_once(
    services: Services, graph: FakeGraphApi, admin: dict[str, str]
) -> None:
    async with AsyncTestClient(app=create_app(services)) as served:
        assert (
            await served.put(f"{BASE}/ice-breakers", json=ICE, headers=admin)
        ).status_code == 200

        async def applied() -> None:
            shown = (await served.get(f"{BASE}/ice-breakers", headers=admin)).json()
            assert shown["push"]["status"] == "applied"

        await eventually(applied, timeout=5.0)  # well before the 15-second poll
    assert graph.messenger_profile[ACCOUNT] == ICE


def profile_requests(graph: FakeGraphApi) -> list[dict[str, Any]]:
    return [r for r in graph.requests if r["path"].endswith("/messenger_profile")]


def account_events(services: Services, *kinds: str) -> list[dict[str, Any]]:
    return [
        {"type": kind, **data}
        for kind, data in stored_events(services)
        if kind.split(".", 1)[1] in kinds
    ]


async def test_ice_breakers_and_a_menu_are_pushed_once_and_shown_applied(
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    admin: dict[str, str],
    admin_key: IssuedKey,
) -> None:
    before = await api.get(f"{BASE}/ice-breakers", headers=admin)
    assert before.json() == {"ice_breakers": None, "push": before.json()["push"]}
    assert before.json()["push"]["status"] == "none"

    put = await api.put(f"{BASE}/ice-breakers", json=ICE, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["push"]["status"] == "pending"
    assert (await api.put(f"{BASE}/persistent-menu", json=MENU, headers=admin)).status_code == 200
    # The same value again records nothing.
    assert (await api.put(f"{BASE}/ice-breakers", json=ICE, headers=admin)).status_code == 200

    assert await services.dispatcher.push_entry_points() == 2
    assert await services.dispatcher.push_entry_points() == 0  # pushed once

    pushes = profile_requests(graph)
    assert [(r["method"], r["path"], r["token"]) for r in pushes] == [
        ("POST", PROFILE_PATH, ACCESS_TOKEN),
        ("POST", PROFILE_PATH, ACCESS_TOKEN),
    ]
    assert pushes[0]["body"] == {"platform": "instagram", **ICE}
    assert pushes[1]["body"] == {"platform": "instagram", **MENU}
    assert graph.messenger_profile[ACCOUNT] == {**ICE, **MENU}

    shown = (await api.get(f"{BASE}/ice-breakers", headers=admin)).json()
    assert shown["ice_breakers"] == ICE["ice_breakers"]
    assert shown["push"]["status"] == "applied"
    assert shown["push"]["error"] is None
    menu = (await api.get(f"{BASE}/persistent-menu", headers=admin)).json()
    assert menu["persistent_menu"] == MENU["persistent_menu"]
    assert menu["push"]["status"] == "applied"

    # The account's events say who changed what, and what Meta took.
    events = account_events(
        services, "IceBreakersChanged", "PersistentMenuChanged", "EntryPointsApplied"
    )
    assert [(e["type"], e.get("by"), e["version"]) for e in events] == [
        ("Account.IceBreakersChanged", f"api-key:{admin_key.key.key_id}", 1),
        ("Account.PersistentMenuChanged", f"api-key:{admin_key.key.key_id}", 1),
        ("Account.EntryPointsApplied", None, 1),
        ("Account.EntryPointsApplied", None, 1),
    ]
    assert events[0]["ice_breakers"] == ICE["ice_breakers"]
    assert events[2]["entry_point"] == "ice_breakers"
    assert events[2]["pushed"] == {"platform": "instagram", **ICE}

    # Removing deletes the field at Meta.
    removed = await api.delete(f"{BASE}/ice-breakers", headers=admin)
    assert removed.status_code == 200
    assert removed.json()["ice_breakers"] is None
    assert await services.dispatcher.push_entry_points() == 1
    last = profile_requests(graph)[-1]
    assert (last["method"], last["body"], last["query"]) == (
        "DELETE",
        {"fields": ["ice_breakers"]},
        {"platform": ["instagram"]},
    )
    assert graph.messenger_profile[ACCOUNT] == MENU
    shown = (await api.get(f"{BASE}/ice-breakers", headers=admin)).json()
    assert (shown["ice_breakers"], shown["push"]["status"]) == (None, "applied")


async def test_a_failure_is_recorded_and_shown_then_retried_with_backoff(
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    admin: dict[str, str],
    clock: MovableClock,
) -> None:
    clock.stop()
    await api.put(f"{BASE}/ice-breakers", json=ICE, headers=admin)
    graph.profile_answers.append((500, TEMPORARY))
    assert await services.dispatcher.push_entry_points() == 1

    shown = (await api.get(f"{BASE}/ice-breakers", headers=admin)).json()
    assert shown["push"]["status"] == "failed"
    error = shown["push"]["error"]
    assert (error["code"], error["attempt"], error["retrying"]) == (2, 1, True)
    assert error["message"] == TEMPORARY["error"]["message"]
    failed = account_events(services, "EntryPointsFailed")
    assert [(e["code"], e["attempt"], e["retryable"]) for e in failed] == [(2, 1, True)]
    assert failed[0]["pushed"] == {"platform": "instagram", **ICE}

    # Not before the backoff; then once, and Meta takes it.
    assert await services.dispatcher.push_entry_points() == 0
    clock.advance(29_000)
    assert await services.dispatcher.push_entry_points() == 0
    clock.advance(1_000)
    assert await services.dispatcher.push_entry_points() == 1
    assert len(profile_requests(graph)) == 2
    shown = (await api.get(f"{BASE}/ice-breakers", headers=admin)).json()
    assert (shown["push"]["status"], shown["push"]["error"]) == ("applied", None)


async def test_a_rejected_token_is_recorded_on_the_account_and_new_credentials_push_again(
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    admin: dict[str, str],
    clock: MovableClock,
) -> None:
    """Meta refusing the token of a push says what a refused send says: the account's
    token is rejected (shown, and nothing more is pushed or sent with it) until new
    credentials come, and then the waiting entry point goes out with them."""
    clock.stop()
    await api.put(f"{BASE}/ice-breakers", json=ICE, headers=admin)
    graph.access_token = "IGAA-new-token"  # Meta no longer takes the account's token
    assert await services.dispatcher.push_entry_points() == 1

    account = (await api.get(BASE, headers=admin)).json()
    assert account["sending"]["token_rejected"] is True
    rejected = account_events(services, "TokenRejected")
    code, subcode = TOKEN_EXPIRED["error"]["code"], TOKEN_EXPIRED["error"]["error_subcode"]
    assert [(e["code"], e["subcode"]) for e in rejected] == [(code, subcode)]
    shown = (await api.get(f"{BASE}/ice-breakers", headers=admin)).json()
    assert (shown["push"]["status"], shown["push"]["error"]["code"]) == ("failed", 190)

    # Past every backoff, the dead token is not tried again.
    clock.advance(24 * 3600 * 1000)
    assert await services.dispatcher.push_entry_points() == 0
    assert len(profile_requests(graph)) == 1

    rotated = await api.post(
        f"{BASE}/credentials", headers=admin, json={"access_token": "IGAA-new-token"}
    )
    assert rotated.status_code == 200, rotated.text
    assert await services.dispatcher.push_entry_points() == 1
    pushes = profile_requests(graph)
    assert [p["token"] for p in pushes] == [ACCESS_TOKEN, "IGAA-new-token"]
    shown = (await api.get(f"{BASE}/ice-breakers", headers=admin)).json()
    assert (shown["push"]["status"], shown["push"]["error"]) == ("applied", None)


async def test_a_refusal_waits_for_a_new_change(
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    admin: dict[str, str],
    clock: MovableClock,
) -> None:
    clock.stop()
    await api.put(f"{BASE}/persistent-menu", json=MENU, headers=admin)
    graph.profile_answers.append((400, invalid_parameter("Param persistent_menu is invalid")))
    await services.dispatcher.push_entry_points()
    clock.advance(24 * 3600 * 1000)
    assert await services.dispatcher.push_entry_points() == 0
    shown = (await api.get(f"{BASE}/persistent-menu", headers=admin)).json()
    assert shown["push"]["status"] == "failed"
    assert shown["push"]["error"]["code"] == 100
    assert shown["push"]["error"]["retrying"] is False

    changed = json.loads(json.dumps(MENU))
    changed["persistent_menu"][0]["call_to_actions"][0]["title"] = "Talk to a person"
    await api.put(f"{BASE}/persistent-menu", json=changed, headers=admin)
    assert await services.dispatcher.push_entry_points() == 1
    assert graph.messenger_profile[ACCOUNT] == changed


async def test_a_restart_between_the_push_and_its_record_pushes_again(
    database_url: str,
    make_services: Callable[..., Services],
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    admin: dict[str, str],
) -> None:
    if database_url == "memory://":
        pytest.skip("nothing outlives a process in memory")
    await api.put(f"{BASE}/ice-breakers", json=ICE, headers=admin)
    # Meta gets the push and takes its time answering; the dispatcher dies meanwhile.
    graph.profile_answers.append(("sleep", 0.5))
    pushing = asyncio.ensure_future(services.dispatcher.push_entry_points())
    await eventually(lambda: _assert(len(profile_requests(graph)) == 1))
    pushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pushing
    assert services.entry_points.ice_breakers(ACCOUNT).push.status == "pending"

    restarted = make_services(database_url, graph_api_url=graph.url)
    restarted.writer.start()  # as `dmledger dispatch` does
    try:
        assert await restarted.dispatcher.push_entry_points() == 1
    finally:
        restarted.writer.stop()
    assert [r["body"] for r in profile_requests(graph)] == [{"platform": "instagram", **ICE}] * 2
    assert restarted.entry_points.ice_breakers(ACCOUNT).push.status == "applied"


def _assert(condition: bool) -> None:
    assert condition


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "ice-breakers",
            {
                "ice_breakers": [
                    {
                        "locale": "default",
                        "call_to_actions": [
                            {"question": f"Q{n}?", "payload": f"P{n}"} for n in range(5)
                        ],
                    }
                ]
            },
            "ice_breakers[0].call_to_actions[4]",
        ),
        (
            "ice-breakers",
            {
                "ice_breakers": [
                    {"locale": "en_US", "call_to_actions": [{"question": "Hours?", "payload": "P"}]}
                ]
            },
            "ice_breakers",
        ),
        (
            "persistent-menu",
            {
                "persistent_menu": [
                    {
                        "locale": "default",
                        "call_to_actions": [
                            {"type": "web_url", "title": "Shop", "url": "http://shop.example/"}
                        ],
                    }
                ]
            },
            "persistent_menu[0].call_to_actions[0].url",
        ),
    ],
)
async def test_what_meta_would_refuse_is_a_422_naming_the_field(
    api: Client,
    services: Services,
    admin: dict[str, str],
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await api.put(f"{BASE}/{path}", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == field
    assert account_events(services, "IceBreakersChanged", "PersistentMenuChanged") == []


async def test_only_an_admin_changes_entry_points(api: Client, services: Services) -> None:
    account_key = bearer(issue_key(services, "account", ACCOUNT))
    refused = await api.put(f"{BASE}/ice-breakers", json=ICE, headers=account_key)
    assert refused.status_code == 403
    assert (await api.get(f"{BASE}/ice-breakers", headers=account_key)).status_code == 200
    assert (await api.delete(f"{BASE}/persistent-menu", headers=account_key)).status_code == 403


async def test_a_tap_on_an_ice_breaker_is_answered_by_a_postback_rule(
    api: Client, services: Services, graph: FakeGraphApi, admin: dict[str, str]
) -> None:
    await api.put(f"{BASE}/ice-breakers", json=ICE, headers=admin)
    rule = {
        "name": "opening hours",
        "triggers": [{"type": "postback", "value": "ICEBREAKER_OPENING_HOURS"}],
        "reply": "We are open 9 to 5.",
    }
    assert (await api.post(f"{BASE}/rules", json=rule, headers=admin)).status_code == 201
    tap = meta_json("postback_icebreaker")
    tap["entry"][0]["messaging"][0]["timestamp"] = int(time.time() * 1000)  # the window is open
    body = json.dumps(tap).encode()
    tapped = await api.post("/webhooks/instagram", content=body, headers=signed_headers(body))
    assert tapped.status_code == 200
    for _ in range(3):
        services.read_models.catch_up()
        await services.dispatcher.drain()
    sends = [r for r in graph.requests if r["path"].endswith("/messages")]
    assert [(s["body"]["recipient"]["id"], s["body"]["message"]) for s in sends] == [
        (PARTICIPANT, {"text": "We are open 9 to 5."})
    ]
