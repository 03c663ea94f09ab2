"""The composition root: `build` takes fakes for its ports, and `Services.close()` closes every
HTTP client it made."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from infrastructure.crm_webhooks import StandardWebhooksClient
from infrastructure.graph_api import GraphApiProfiles
from infrastructure.instagram_api import InstagramGraphClient
from infrastructure.settings import Settings
from interfaces.composition import Services, build
from interfaces.http.app import create_app
from tests.conftest import ACCOUNT, bearer, eventually, issue_key, register_account
from tests.support.clock import MovableClock
from tests.support.conditions import assert_true
from tests.support.conversations import REPLIES
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi
from tests.support.rules import SHIPPING, definition
from tests.support.webhooks import deliver, message

DAY_MS = 24 * 3_600_000


@pytest.fixture
def built(make_settings: Callable[..., Settings], clock: MovableClock) -> Iterator[Services]:
    """Services built here with the test's clock, closed after the test (if it did not)."""
    services = build(make_settings("memory://"), clock=clock, announce=lambda _: None)
    register_account(services)
    yield services
    services.close()


async def test_a_persons_reply_is_refused_once_the_built_clock_is_past_seven_days(
    built: Services, clock: MovableClock
) -> None:
    # given a conversation whose participant wrote now, and an API key
    key = bearer(issue_key(built, "account", ACCOUNT))
    app = create_app(built, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as api:
        await deliver(api, message("hello", "m-1", at=clock.now_ms()))

        # when six days pass on the services' clock, a person may still answer
        clock.advance(6 * DAY_MS)
        within = await api.post(
            REPLIES, headers={**key, "Idempotency-Key": "six-days"}, json={"text": "Still here"}
        )
        # and when two more pass, Meta would refuse it: refused at once, no sleeping
        clock.advance(2 * DAY_MS)
        past = await api.post(
            REPLIES, headers={**key, "Idempotency-Key": "eight-days"}, json={"text": "Hello?"}
        )

    assert within.status_code == 202, within.text
    assert past.status_code == 422, past.text
    assert past.json()["field"] == "conversation"
    assert "more than 7 days" in past.json()["detail"]


def test_a_port_passed_to_build_is_used_and_left_to_its_owner(
    make_settings: Callable[..., Settings], clock: MovableClock, graph: FakeGraphApi
) -> None:
    # given services built with a Send API client the test made (and so owns)
    own = InstagramGraphClient(graph.url, "v21.0")
    settings = make_settings("memory://", graph_api_url=graph.url)
    services = build(settings, instagram=own, announce=lambda _: None)
    register_account(services)
    services.writer.run_now(services.rules.add(ACCOUNT, definition(SHIPPING), by="test"))

    async def journey() -> bool:
        app = create_app(services, run_projections=False, run_dispatcher=False)
        async with AsyncTestClient(app=app) as api:
            await deliver(api, message("Do you ship?", "m-1"))
        for _ in range(3):
            services.read_models.catch_up()
            await services.dispatcher.drain()
        # when the services close, the client passed in stays open: it is its owner's
        services.close()
        still_open = not own.closed
        await own.aclose()
        return still_open

    still_open = asyncio.run(journey())

    # then the reply went through the client passed in
    assert [s["body"]["message"]["text"] for s in graph.sent] == ["Hi Anna! We ship worldwide."]
    assert still_open
    assert services.instagram is own


def subscribed(services: Services, crm: FakeCrm) -> None:
    """A rule that names the participant (a profile lookup) and a CRM endpoint."""
    services.writer.run_now(services.rules.add(ACCOUNT, definition(SHIPPING), by="test"))
    view = services.writer.run_now(
        services.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret


def delivered_to_crm(services: Services) -> bool:
    rows = services.delivery_queue.deliveries(ACCOUNT, status=None, limit=50, before_position=None)
    kinds = {r["kind"] for r in rows}
    return {"message.received", "conversation.updated"} <= kinds and all(
        r["status"] == "delivered" for r in rows
    )


def clients(services: Services) -> dict[str, Any]:
    assert isinstance(services.instagram, InstagramGraphClient)
    assert isinstance(services.crm, StandardWebhooksClient)
    assert isinstance(services.profiles, GraphApiProfiles)
    return {"send api": services.instagram, "crm": services.crm, "profiles": services.profiles}


async def test_serving_stops_with_every_http_client_closed(
    make_services: Callable[..., Services], graph: FakeGraphApi, crm: FakeCrm
) -> None:
    # given services as `dmledger serve` runs them, with the dispatcher in the web process
    services = make_services("memory://", graph_api_url=graph.url)
    register_account(services)
    subscribed(services, crm)
    async with AsyncTestClient(app=create_app(services)) as api:
        # when a message gets its reply (the Send API's client, which also refreshes the
        # tokens), the participant's profile is looked up and the CRM gets its delivery
        await deliver(api, message("Do you ship to Munich?", "m-1"))
        await eventually(lambda: assert_true(len(graph.sent) == 1), timeout=10)
        # (every delivery settled as delivered: each answer was read, its connection back in
        # the pool; the CRM having a delivery is not enough, its answer may be on its way, or
        # the next delivery may hold the connection)
        await eventually(lambda: assert_true(delivered_to_crm(services)), timeout=10)
        opened = {name: not client.closed for name, client in clients(services).items()}
    # (the app has stopped: its dispatcher closed the async clients in its own loop)
    services.close()

    # then every client was open and is closed now
    assert opened == {"send api": True, "crm": True, "profiles": True}
    assert {name: client.closed for name, client in clients(services).items()} == {
        "send api": True,
        "crm": True,
        "profiles": True,
    }


def test_close_from_outside_the_dispatchers_loop_closes_its_clients(
    make_services: Callable[..., Services], graph: FakeGraphApi, crm: FakeCrm
) -> None:
    # given a dispatcher that sent a reply and a CRM delivery in a loop of another thread
    services = make_services("memory://", graph_api_url=graph.url)
    register_account(services)
    subscribed(services, crm)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def dispatch() -> None:
        app = create_app(services, run_projections=False, run_dispatcher=False)
        async with AsyncTestClient(app=app) as api:
            await deliver(api, message("Do you ship?", "m-1"))
        for _ in range(3):
            services.read_models.catch_up()
            await services.dispatcher.drain()

    try:
        asyncio.run_coroutine_threadsafe(dispatch(), loop).result(30)
        assert graph.sent
        assert crm.delivered()
        opened = {name: not client.closed for name, client in clients(services).items()}

        # when the services are closed from this thread while that loop still runs
        services.close()
        closed = {name: client.closed for name, client in clients(services).items()}
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    # then its clients were closed in their loop
    assert opened == {"send api": True, "crm": True, "profiles": True}
    assert closed == {"send api": True, "crm": True, "profiles": True}
