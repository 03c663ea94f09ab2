"""The dispatcher's less travelled paths, against the fake Graph API and the fake CRM on
loopback: pauses, ambiguous sends, exhausted retries, held accounts, token refreshes,
the CRM's circuit breaker and last attempt, and what the outbox cuts to fit 20 kB."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from application.crm_deliverer import HOLD_MS
from application.instagram_sender import MAX_SEND_ATTEMPTS
from application.served_accounts import FRESH_FOR_MS
from domain.account import AccountStatus
from domain.identity import conversation_id
from interfaces.composition import Services
from projections.outbox.projection import MAX_CRM_BODY
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    register_account,
    stored_events,
)
from tests.support.clock import MovableClock
from tests.support.conversations import sends
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import TEMPORARY, FakeGraphApi, meta_error
from tests.support.webhooks import deliver, echo, message

Client = AsyncTestClient[Any]
CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
BASE = f"/api/v1/accounts/{ACCOUNT}"
REPLIES = f"{BASE}/conversations/{CONVERSATION}/replies"
HOUR = 3_600_000
DAY = 24 * HOUR


@pytest.fixture
def services(
    tmp_path: Path, make_services: Callable[..., Services], graph: FakeGraphApi, crm: FakeCrm
) -> Services:
    # One backend: these paths are the dispatcher's, the same on each.
    built = make_services(f"sqlite:///{tmp_path}/ledger.sqlite3", graph_api_url=graph.url)
    register_account(built)
    view = built.writer.run_now(
        built.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret
    return built


async def step(services: Services, rounds: int = 3) -> None:
    for _ in range(rounds):
        services.read_models.catch_up()
        await services.dispatcher.drain()
    services.read_models.catch_up()


def later(services: Services, ms: int) -> None:
    assert isinstance(services.clock, MovableClock)
    services.clock.advance(ms)


def of_type(services: Services, kind: str) -> list[dict[str, Any]]:
    return [data for k, data in stored_events(services) if k == kind]


async def reply(api: Client, key: dict[str, str], text: str, idempotency_key: str) -> None:
    response = await api.post(
        REPLIES, headers={**key, "Idempotency-Key": idempotency_key}, json={"text": text}
    )
    assert response.status_code == 202, response.text


def crm_rows(services: Services) -> list[dict[str, Any]]:
    return services.delivery_queue.deliveries(ACCOUNT, status=None, limit=500, before_position=None)


# -- Instagram ---------------------------------------------------------------------------------


async def test_a_missing_permission_pauses_the_accounts_sends_for_an_hour(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    graph.answers.append((403, meta_error(200, "Requires instagram_manage_messages permission")))

    await reply(api, key, "one", "k1")
    await step(services)
    [paused] = of_type(services, "Account.SendsPaused")
    assert (paused["reason"], paused["code"]) == ("permission", 200)
    later(services, HOUR - 60_000)
    await step(services)
    assert graph.sent == []
    assert len(sends(graph)) == 1

    later(services, 120_000)
    await step(services)
    assert [s["body"]["message"]["text"] for s in graph.sent] == ["one"]
    assert not of_type(services, "Conversation.ReplyFailed")


async def test_a_send_that_got_no_answer_is_ambiguous_and_never_sent_again(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    graph.answers.append(("drop", None))

    await reply(api, key, "maybe", "k1")
    await step(services)
    later(services, DAY)
    await step(services)

    [failed] = of_type(services, "Conversation.ReplyFailed")
    assert (failed["error_class"], failed["retryable"]) == ("ambiguous", False)
    assert len(sends(graph)) == 1


async def test_the_echo_of_an_ambiguous_send_marks_it_sent_and_tells_the_crm(
    api: Client, services: Services, graph: FakeGraphApi, crm: FakeCrm, key: dict[str, str]
) -> None:
    # given a reply whose send got no answer: it may or may not have gone
    await deliver(api, message("hello", "m-1"))
    await step(services)
    graph.answers.append(("drop", None))
    await reply(api, key, "Yes, it went!", "k1")
    await step(services)
    [failed] = of_type(services, "Conversation.ReplyFailed")
    assert failed["error_class"] == "ambiguous"

    # when Meta's echo of that very text comes back from our account
    body = json.loads(echo("m-echo-1"))
    item = body["entry"][0]["messaging"][0]
    item["message"]["text"] = "Yes, it went!"
    await deliver(api, json.dumps(body).encode())
    await step(services)

    # then the reply is sent, under the echo's id, sent once, and the CRM is told
    [sent] = of_type(services, "Conversation.ReplySent")
    assert (sent["reply_id"], sent["message_id"]) == (failed["reply_id"], "m-echo-1")
    assert len(sends(graph)) == 1
    assert "reply.sent" in [d["payload"]["type"] for d in crm.delivered()]


async def test_retries_end_after_the_last_attempt(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    graph.answers.extend([(500, TEMPORARY)] * (MAX_SEND_ATTEMPTS + 2))

    await reply(api, key, "never", "k1")
    for _ in range(MAX_SEND_ATTEMPTS + 2):
        await step(services)
        later(services, 2 * HOUR)

    failures = of_type(services, "Conversation.ReplyFailed")
    assert [f["retryable"] for f in failures] == [True] * (MAX_SEND_ATTEMPTS - 1) + [False]
    assert failures[-1]["error_class"] == "retries_exhausted"
    assert failures[-1]["attempt"] == MAX_SEND_ATTEMPTS
    assert len(sends(graph)) == MAX_SEND_ATTEMPTS
    assert graph.sent == []


async def test_a_suspended_accounts_replies_wait_until_it_is_reactivated(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    await reply(api, key, "after", "k1")
    await services.writer.run(
        services.accounts.set_status(ACCOUNT, AccountStatus.SUSPENDED, by="test")
    )
    later(services, FRESH_FOR_MS)  # the dispatcher reads the account again

    await step(services)
    later(services, 10 * 60_000)
    await step(services)
    assert sends(graph) == []

    await services.writer.run(
        services.accounts.set_status(ACCOUNT, AccountStatus.ACTIVE, by="test")
    )
    later(services, 120_000)
    await step(services)
    assert [s["body"]["message"]["text"] for s in graph.sent] == ["after"]


async def test_a_deactivated_accounts_replies_are_refused_without_sending(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    await reply(api, key, "too late", "k1")
    await services.writer.run(
        services.accounts.set_status(ACCOUNT, AccountStatus.DEACTIVATED, by="test")
    )
    later(services, FRESH_FOR_MS)  # the dispatcher reads the account again

    await step(services)

    [refused] = of_type(services, "Conversation.ReplyFailed")
    assert refused["error_class"] == "refused"
    assert refused["message"] == "the account is not served"
    assert sends(graph) == []


async def test_a_token_refresh_that_meta_refuses_is_recorded_and_the_token_kept(
    api: Client, services: Services, graph: FakeGraphApi
) -> None:
    assert await services.dispatcher.refresh_tokens() == 0  # a new token is not due
    assert graph.requests == []

    later(services, 51 * DAY)
    assert await services.dispatcher.refresh_tokens() == 0

    [request] = graph.requests
    assert request["path"].endswith("/refresh_access_token")
    [failed] = of_type(services, "Account.TokenRefreshFailed")
    assert "Error validating access token" in failed["message"]
    assert not of_type(services, "Account.TokenRefreshed")


# -- the CRM -------------------------------------------------------------------------------------


def received(crm: FakeCrm) -> list[dict[str, Any]]:
    """What the CRM got of `message.received` (answered or not): the participant's
    profile is a `conversation.updated` of its own, behind it in the conversation's lane."""
    return [d for d in crm.received if d["payload"]["type"] == "message.received"]


def received_mids(crm: FakeCrm) -> list[str]:
    return [d["payload"]["data"]["mid"] for d in received(crm) if d["status"] < 300]


async def test_an_endpoint_failing_five_times_in_a_row_rests_a_minute(
    api: Client, services: Services, crm: FakeCrm
) -> None:
    crm.answers.extend([(500, {})] * 5)
    await deliver(api, message("one", "m-1"))
    for _ in range(5):
        await step(services)
        later(services, 11 * HOUR)
    later(services, -11 * HOUR)  # right after the fifth failure
    assert [r["status"] for r in crm.received] == [500] * 5

    # a notification of another conversation waits, without an attempt
    other = json.loads(message("two", "m-2"))
    other["entry"][0]["messaging"][0]["sender"]["id"] = "another-participant"
    await deliver(api, json.dumps(other).encode())
    await step(services)
    assert len(crm.received) == 5

    later(services, 61_000)
    await step(services)
    # the endpoint answers again: the first conversation's head is retried at once
    assert received_mids(crm) == ["m-2", "m-1"]


async def test_a_crm_delivery_is_dead_after_its_last_attempt(
    api: Client, services: Services, crm: FakeCrm
) -> None:
    crm.answers.extend([(500, {})] * 12)
    await deliver(api, message("one", "m-1"))
    for _ in range(10):
        await step(services)
        later(services, 11 * HOUR)

    [row] = [r for r in crm_rows(services) if r["kind"] == "message.received"]
    assert row["status"] == "dead"
    assert [a["status_code"] for a in row["history"]] == [500] * 8
    assert len(received(crm)) == 8


async def test_a_delivery_whose_endpoint_is_gone_waits_for_one_without_an_attempt(
    api: Client, services: Services, crm: FakeCrm
) -> None:
    await deliver(api, message("one", "m-1"))
    services.read_models.catch_up()  # the delivery is in the outbox
    await services.writer.run(services.crm_endpoints.remove(ACCOUNT, by="test"))

    await services.dispatcher.drain()

    [row] = [r for r in crm_rows(services) if r["kind"] == "message.received"]
    assert (row["status"], row["attempts"], row["history"]) == ("pending", 0, [])
    assert crm.received == []

    # an endpoint set again gets it, once the hold has run out
    view = services.writer.run_now(
        services.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret
    later(services, HOLD_MS)
    await step(services)
    assert received_mids(crm) == ["m-1"]


async def test_a_long_text_is_cut_so_that_the_crm_payload_stays_under_20_kb(
    api: Client, services: Services, crm: FakeCrm
) -> None:
    text = "ü" * 15_000  # 30 kB of UTF-8
    await deliver(api, message(text, "m-long"))
    await step(services)

    [delivered] = [d for d in crm.delivered() if d["payload"]["type"] == "message.received"]
    data = delivered["payload"]["data"]
    assert data["truncated"] is True
    assert text.startswith(data["text"])
    assert 0 < len(data["text"]) < len(text)
    [row] = [r for r in crm_rows(services) if r["kind"] == "message.received"]
    assert len(row["body"].encode()) <= MAX_CRM_BODY


async def test_a_short_text_is_delivered_whole(
    api: Client, services: Services, crm: FakeCrm
) -> None:
    await deliver(api, message("short", "m-1"))
    await step(services)

    [delivered] = [d for d in crm.delivered() if d["payload"]["type"] == "message.received"]
    assert delivered["payload"]["data"]["text"] == "short"
    assert "truncated" not in delivered["payload"]["data"]


# -- who redelivered what -----------------------------------------------------------------------


async def test_a_redelivery_is_recorded_with_who_asked_for_what(
    api: Client, services: Services, crm: FakeCrm, key: dict[str, str]
) -> None:
    await deliver(api, message("one", "m-1"))
    await step(services)
    [delivered] = [d for d in crm.delivered() if d["payload"]["type"] == "message.received"]

    one = await api.post(f"{BASE}/deliveries/{delivered['id']}/redeliver", headers=key)
    since = await api.post(
        f"{BASE}/deliveries/redeliver", headers=key, params={"since": "2000-01-01T00:00:00Z"}
    )
    missing = await api.post(f"{BASE}/deliveries/no-such-delivery/redeliver", headers=key)
    await step(services)

    assert (one.status_code, since.status_code, missing.status_code) == (202, 200, 404)
    records = of_type(services, "Account.DeliveriesRedelivered")
    assert [(r["delivery_ids"], r["since"]) for r in records] == [
        ([delivered["id"]], None),
        ([], 946_684_800_000),
    ]
    assert all(r["by"].startswith("api-key:") for r in records)
    assert [d["id"] for d in crm.delivered()].count(delivered["id"]) == 2  # due again once
