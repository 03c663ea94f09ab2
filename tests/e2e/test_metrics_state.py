"""The gauges of `/metrics` read from the database, on every backend: each delivery counted
as due, then leased, then dead, or waiting for its retry; a projection's lag in events and
seconds; the accounts by status."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from application.ports import DeliveryStatus
from infrastructure.delivery_counts import ChannelCounts, channel_counts
from interfaces.composition import Services
from interfaces.operational_state import OperationalStateReader
from tests.conftest import ACCOUNT, register_account
from tests.support.fake_crm import FakeCrm
from tests.support.webhooks import deliver, message

HOUR_MS = 3_600_000


@pytest.fixture
def services(database_url: str, make_services: Callable[..., Services], crm: FakeCrm) -> Services:
    built = make_services(database_url)
    register_account(built)
    built.writer.run_now(
        built.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    return built


def crm_counts(services: Services, now: int) -> ChannelCounts:
    return {c.channel: c for c in channel_counts(services.delivery_queue.engine, now)}["crm"]


async def test_a_delivery_is_counted_due_then_leased_then_dead_or_waiting(
    services: Services, api: AsyncTestClient[Any]
) -> None:
    # given CRM deliveries in the outbox that no dispatcher has seen yet
    await deliver(api, message("one", "m-1"), message("two", "m-2"), message("three", "m-3"))
    services.read_models.catch_up()
    now = int(time.time() * 1000)
    fresh = crm_counts(services, now)
    assert fresh.due >= 3
    assert fresh.oldest_due_ms is not None
    assert now - 60_000 < fresh.oldest_due_ms <= now
    assert (fresh.leased, fresh.dead) == (0, 0)

    # when a dispatcher leases what may go (the head of the conversation)
    leased = services.delivery_queue.lease(
        "crm", now=now, limit=10, owner="test", lease_ms=60_000, skip_accounts=set()
    )
    assert len(leased) == 1
    held = crm_counts(services, now)
    assert (held.due, held.leased) == (fresh.due - 1, 1)

    # then a dead delivery is counted dead, and one waiting for its retry is not due
    services.delivery_queue.settle(leased[0].delivery_id, status=DeliveryStatus.DEAD, now=now)
    second = services.delivery_queue.lease(
        "crm", now=now, limit=10, owner="test", lease_ms=60_000, skip_accounts=set()
    )
    services.delivery_queue.settle(
        second[0].delivery_id,
        status=DeliveryStatus.RETRYING,
        now=now,
        next_attempt_at=now + HOUR_MS,
    )
    after = crm_counts(services, now)
    assert (after.dead, after.leased, after.due) == (1, 0, fresh.due - 2)

    # and an hour later the retry is due again
    assert crm_counts(services, now + HOUR_MS + 1).due == fresh.due - 1


async def test_a_projection_behind_the_log_shows_its_lag_in_events_and_seconds(
    services: Services, api: AsyncTestClient[Any]
) -> None:
    # given a message stored a while ago (as the reader's clock sees it) and not projected
    services.read_models.catch_up()
    await deliver(api, message("one", "m-1"))
    clock = [time.time() + 30]
    read = OperationalStateReader(
        services.read_models, services.delivery_queue, clock=lambda: clock[0]
    )

    behind = {p.name: p for p in read().projections}["conversation_list"]
    assert behind.head - behind.position >= 1
    assert 29 < behind.lag_seconds < 60

    # when the projections catch up, then nothing waits
    services.read_models.catch_up()
    caught_up = {p.name: p for p in read().projections}["conversation_list"]
    assert (caught_up.head - caught_up.position, caught_up.lag_seconds) == (0, 0.0)
    assert read().accounts == {"active": 1, "suspended": 0, "deactivated": 0}
