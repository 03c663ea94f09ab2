"""CRM deliveries that used to be lost or never end: a fresh endpoint, a disabled one,
`Retry-After`, and a conversation blocked behind one failing delivery. Through HTTP, the
real dispatcher, and a fake CRM on loopback that verifies Standard Webhooks signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from application.crm_deliverer import HOLD_MS
from domain.identity import conversation_id
from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    register_account,
    stored_events,
)
from tests.support.clock import MovableClock
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi
from tests.support.webhooks import deliver, from_participant, message

Client = AsyncTestClient[Any]
CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
BASE = f"/api/v1/accounts/{ACCOUNT}"
HOUR = 3_600_000


@pytest.fixture
def services(services_with_graph: Services, clock: MovableClock) -> Services:
    """An account without a CRM endpoint yet; the clock stands still."""
    clock.stop()
    return services_with_graph


async def step(services: Services, rounds: int = 3) -> None:
    for _ in range(rounds):
        services.read_models.catch_up()
        await services.dispatcher.drain()
    services.read_models.catch_up()


def later(services: Services, ms: int) -> None:
    assert isinstance(services.clock, MovableClock)
    services.clock.advance(ms)


async def put_endpoint(api: Client, key: dict[str, str], crm: FakeCrm) -> None:
    response = await api.put(f"{BASE}/crm-endpoint", headers=key, json={"url": crm.url})
    assert response.status_code == 200, response.text
    if response.json()["secret"] is not None:
        crm.secret = response.json()["secret"]


def mids(crm: FakeCrm) -> list[str]:
    return [
        d["payload"]["data"]["mid"]
        for d in crm.delivered()
        if d["payload"]["type"] == "message.received"
    ]


def crm_rows(services: Services) -> list[dict[str, Any]]:
    rows = services.delivery_queue.deliveries(ACCOUNT, status=None, limit=500, before_position=None)
    return [r for r in rows if r["kind"] == "message.received"]


def of_type(services: Services, kind: str) -> list[dict[str, Any]]:
    return [data for k, data in stored_events(services) if k == kind]


# -- a fresh endpoint -------------------------------------------------------------------------


async def test_a_message_right_after_the_endpoint_is_set_is_delivered_not_given_up(
    api: Client, services: Services, crm: FakeCrm, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    # the dispatcher has just read the account, without an endpoint (it sent a reply)
    await deliver(api, message("hello", "m-1"))
    await step(services)
    replies = f"{BASE}/conversations/{CONVERSATION}/replies"
    sent = await api.post(replies, headers={**key, "Idempotency-Key": "r-1"}, json={"text": "Hi"})
    assert sent.status_code == 202, sent.text
    await step(services)
    assert len(graph.sent) == 1

    # when the CRM endpoint is set and a message arrives at once (the clock stands still)
    await put_endpoint(api, key, crm)
    await deliver(api, message("are you there?", "m-2"))
    await step(services)

    # then the CRM gets it, and nothing is dead
    assert mids(crm) == ["m-2"]
    assert [r["status"] for r in crm_rows(services)] == ["delivered"]


# -- a disabled endpoint ----------------------------------------------------------------------


async def test_messages_that_arrive_while_the_endpoint_is_disabled_go_once_it_is_set_again(
    api: Client, services: Services, crm: FakeCrm, key: dict[str, str]
) -> None:
    await put_endpoint(api, key, crm)
    crm.answers.append((410, {}))
    await deliver(api, message("one", "m-1"))
    await step(services)
    assert of_type(services, "Account.CrmEndpointDisabled")

    # while it is disabled, two more messages arrive: they are held, not dropped
    await deliver(api, message("two", "m-2"), message("three", "m-3"))
    await step(services)
    assert [r["status"] for r in crm_rows(services)] == ["pending", "pending", "dead"]
    assert crm.delivered() == []

    # when the CRM sets its endpoint again, they go, in order
    await put_endpoint(api, key, crm)
    later(services, HOLD_MS)
    await step(services)
    assert mids(crm) == ["m-2", "m-3"]

    # and a redelivery since before the 410 sends all of them (the three messages and the
    # participant's profile, a conversation.updated after the first), in order
    before = len(crm.delivered())
    again = await api.post(
        f"{BASE}/deliveries/redeliver", headers=key, params={"since": "2000-01-01T00:00:00Z"}
    )
    assert again.json()["redelivered"] == 4
    # redeliveries are due by the wall clock, which this test's frozen dispatcher clock
    # trails once the test has run longer than the hold (a loaded machine)
    later(services, HOLD_MS)
    await step(services)
    assert mids(crm)[2:] == ["m-1", "m-2", "m-3"]
    sequences = [d["payload"]["data"]["sequence"] for d in crm.delivered()[before:]]
    assert sequences == [1, 2, 3, 4]


# -- Retry-After ------------------------------------------------------------------------------


async def test_retry_after_delays_an_attempt_but_never_adds_one(
    api: Client, services: Services, crm: FakeCrm, key: dict[str, str]
) -> None:
    await put_endpoint(api, key, crm)
    crm.answers.extend([(429, {"Retry-After": "1"})] * 20)
    await deliver(api, message("one", "m-1"))
    for _ in range(12):
        await step(services)
        later(services, 11 * HOUR)

    [row] = crm_rows(services)
    assert row["status"] == "dead"
    assert [a["status_code"] for a in row["history"]] == [429] * 8
    assert len([d for d in crm.received if d["payload"]["type"] == "message.received"]) == 8


@pytest.mark.parametrize("status", [429, 503])
async def test_a_retry_after_of_a_day_waits_an_hour_at_most(
    api: Client, services: Services, crm: FakeCrm, key: dict[str, str], status: int
) -> None:
    await put_endpoint(api, key, crm)
    crm.answers.append((status, {"Retry-After": "86400"}))
    await deliver(api, message("one", "m-1"))
    await step(services)
    now = services.clock.now_ms()

    [row] = crm_rows(services)
    assert row["status"] == "retrying"
    assert now < row["next_attempt_at"] <= now + HOUR
    later(services, HOUR)
    await step(services)
    assert mids(crm) == ["m-1"]


# -- a conversation blocked behind one failing delivery ---------------------------------------


async def test_a_blocked_conversation_goes_at_once_when_another_delivery_succeeds(
    api: Client, services: Services, crm: FakeCrm, key: dict[str, str]
) -> None:
    await put_endpoint(api, key, crm)
    # the CRM fails three times: the first message now waits 30 minutes, the second behind it
    crm.answers.extend([(500, {})] * 3)
    await deliver(api, message("one", "m-1"))
    await step(services)
    for _ in range(2):
        later(services, 400_000)
        await step(services)
    await deliver(api, message("two", "m-2"))
    await step(services)
    assert mids(crm) == []
    [retrying] = [r for r in crm_rows(services) if r["status"] == "retrying"]
    assert retrying["next_attempt_at"] - services.clock.now_ms() > 20 * 60_000

    # when a message of another conversation is delivered (the CRM is healthy again)
    await deliver(api, from_participant("hi", "m-other", "another-participant"))
    await step(services)

    # then the blocked conversation goes at once, in order
    assert mids(crm) == ["m-other", "m-1", "m-2"]


async def test_the_retry_schedule_is_a_setting(
    database_url: str, make_services: Callable[..., Services], crm: FakeCrm, clock: MovableClock
) -> None:
    services = make_services(database_url, crm_retry_schedule_seconds=(1, 2))
    register_account(services)
    view = services.writer.run_now(
        services.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret
    crm.answers.extend([(500, {})] * 5)
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as api:
        await deliver(api, message("one", "m-1"))
    now = services.clock.now_ms()
    for seconds in (0, 2, 5, 10):
        clock.stop(at=now + seconds * 1000)
        await step(services)

    [row] = crm_rows(services)
    assert row["status"] == "dead"
    assert [a["at"] - now for a in row["history"]] == [0, 2000, 5000]
