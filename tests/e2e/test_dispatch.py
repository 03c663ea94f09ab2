"""Replies leave for the Instagram Send API, notifications for the CRM: a fake Graph API and
a fake CRM (verifying Standard Webhooks signatures) on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import (
    ACCESS_TOKEN,
    ACCOUNT,
    PARTICIPANT,
    bearer,
    eventually,
    issue_key,
    register_account,
    stored_events,
)
from tests.support.clock import MovableClock
from tests.support.conditions import assert_true
from tests.support.conversations import REPLIES, sends, step
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import (
    OUTSIDE_WINDOW,
    RATE_LIMITED,
    TEMPORARY,
    TOKEN_EXPIRED,
    USER_UNAVAILABLE,
    FakeGraphApi,
)
from tests.support.rules import SHIPPING, definition
from tests.support.webhooks import deliver, echo, message

Client = AsyncTestClient[Any]
CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
BASE = f"/api/v1/accounts/{ACCOUNT}"


@pytest.fixture
def services(services_with_crm: Services) -> Services:
    """Sending to the fake Graph API, delivering to the fake CRM (`tests/e2e/conftest.py`)."""
    return services_with_crm


def received_ids(crm: FakeCrm) -> list[str]:
    """The `webhook-id` of each `message.received` the CRM got, in order."""
    return [d["id"] for d in crm.delivered() if d["payload"]["type"] == "message.received"]


def types(services: Services) -> list[str]:
    return [kind for kind, _ in stored_events(services)]


def of_type(services: Services, kind: str) -> list[dict[str, Any]]:
    return [data for k, data in stored_events(services) if k == kind]


async def test_done_when_a_matching_message_gets_its_reply_at_meta_and_the_crm_a_verified_delivery(
    database_url: str, make_services: Callable[..., Services], graph: FakeGraphApi, crm: FakeCrm
) -> None:
    # given an account with a rule and a CRM endpoint, served as `dmledger serve` does
    services = make_services(database_url, graph_api_url=graph.url)
    register_account(services)
    services.writer.run_now(services.rules.add(ACCOUNT, definition(SHIPPING), by="test"))
    view = services.writer.run_now(
        services.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret
    async with AsyncTestClient(app=create_app(services)) as api:
        # when a signed webhook matches the rule
        await deliver(api, message("Do you ship to Munich?", "m-1"))

        # then the reply reaches the Send API, and the CRM gets a verified message.received
        await eventually(lambda: assert_true(len(graph.sent) == 1), timeout=10)
        await eventually(
            lambda: assert_true(
                "message.received" in [d["payload"]["type"] for d in crm.delivered()]
            ),
            timeout=10,
        )
    sent = graph.sent[0]
    assert sent["path"] == f"/v21.0/{ACCOUNT}/messages"
    assert sent["body"] == {
        "recipient": {"id": PARTICIPANT},
        "message": {"text": "Hi Anna! We ship worldwide."},
    }
    assert sent["token"] == ACCESS_TOKEN
    received = next(d for d in crm.delivered() if d["payload"]["type"] == "message.received")
    assert received["payload"]["data"]["mid"] == "m-1"
    assert received["payload"]["data"]["sequence"] == 1
    assert received["id"].startswith("evt_")
    assert crm.rejected == []


async def test_a_crm_reply_is_sent_once_however_often_it_is_posted(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    headers = {**key, "Idempotency-Key": "reply-0001"}

    first = await api.post(REPLIES, headers=headers, json={"text": "Hello! How can we help?"})
    again = await api.post(REPLIES, headers=headers, json={"text": "Hello! How can we help?"})
    other = await api.post(REPLIES, headers=headers, json={"text": "Something else"})
    await step(services)
    await api.post(REPLIES, headers=headers, json={"text": "Hello! How can we help?"})
    await step(services)

    assert (first.status_code, again.status_code, other.status_code) == (202, 202, 409)
    assert first.json()["reply_id"] == again.json()["reply_id"]
    assert first.headers["location"] == first.json()["status_url"]
    assert [s["body"]["message"]["text"] for s in graph.sent] == ["Hello! How can we help?"]
    status = (await api.get(first.json()["status_url"], headers=key)).json()
    assert (status["status"], status["message_id"]) == ("sent", graph.sent[0]["message_id"])
    assert of_type(services, "Conversation.AutomationPaused")[0]["reason"] == "human_reply"


async def test_a_reply_without_an_idempotency_key_is_refused(
    api: Client, services: Services, key: dict[str, str]
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)

    response = await api.post(REPLIES, headers=key, json={"text": "Hi"})

    assert response.status_code == 422
    assert response.json()["field"] == "Idempotency-Key"


async def test_the_echo_of_a_sent_reply_is_linked_to_it_not_shown_twice(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    reply = (
        await api.post(REPLIES, headers={**key, "Idempotency-Key": "k1"}, json={"text": "Hi!"})
    ).json()
    await step(services)

    await deliver(api, echo(graph.sent[0]["message_id"]))
    await step(services)

    messages = (await api.get(f"{BASE}/conversations/{CONVERSATION}/messages", headers=key)).json()[
        "messages"
    ]
    assert [(m["direction"], m["text"]) for m in messages] == [
        ("inbound", "hello"),
        ("outbound", "Hi!"),
    ]
    assert messages[1]["delivery_status"] == "delivered"
    assert (await api.get(reply["status_url"], headers=key)).json()["status"] == "delivered"
    assert not of_type(services, "Conversation.AutomationPaused")[1:]


async def test_an_echo_we_did_not_send_is_a_person_answering_from_the_app(
    api: Client, services: Services
) -> None:
    await deliver(api, message("hello", "m-1"), echo("m-typed-in-the-app"))
    await step(services)

    [paused] = of_type(services, "Conversation.AutomationPaused")
    assert (paused["reason"], paused["by"]) == ("human_replied_in_app", "instagram-app")


@pytest.mark.parametrize(
    ("answer", "error_class", "code"),
    [
        ((400, USER_UNAVAILABLE), "terminal", 551),
        ((400, OUTSIDE_WINDOW), "terminal", 10),
    ],
)
async def test_a_terminal_error_fails_the_reply_with_metas_error(
    api: Client,
    services: Services,
    graph: FakeGraphApi,
    key: dict[str, str],
    answer: tuple[int, dict[str, Any]],
    error_class: str,
    code: int,
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    graph.answers.append(answer)

    reply = (
        await api.post(REPLIES, headers={**key, "Idempotency-Key": "k"}, json={"text": "Hi"})
    ).json()
    await step(services)

    [failed] = of_type(services, "Conversation.ReplyFailed")
    assert (failed["error_class"], failed["code"], failed["retryable"]) == (
        error_class,
        code,
        False,
    )
    assert failed["fbtrace_id"] == "AbCdEfGhIjK"
    status = (await api.get(reply["status_url"], headers=key)).json()
    assert status["status"] == "failed"
    assert status["error"]["code"] == code
    assert len(sends(graph)) == 1  # not retried


async def test_a_transient_error_is_retried_with_backoff(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str], clock: MovableClock
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    graph.answers.extend([(500, TEMPORARY), (400, TEMPORARY)])

    accepted = await api.post(REPLIES, headers={**key, "Idempotency-Key": "k"}, json={"text": "Hi"})
    await step(services)
    assert graph.sent == []
    for _ in range(2):
        clock.advance(3_600_000)
        await step(services)

    assert len(graph.sent) == 1
    assert [f["retryable"] for f in of_type(services, "Conversation.ReplyFailed")] == [True, True]
    assert len(of_type(services, "Conversation.ReplySent")) == 1
    # the sent reply carries no error any more; its attempts stay visible
    status = (await api.get(accepted.json()["status_url"], headers=key)).json()
    assert status["status"] == "sent"
    assert status["error"] is None
    assert [a["outcome"] for a in status["attempts"]] == ["retrying", "retrying", "sent"]
    assert status["attempts"][0]["error"]["code"] == 2


async def test_a_rejected_token_pauses_the_accounts_sends_until_credentials_are_rotated(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str], clock: MovableClock
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    graph.answers.append((401, TOKEN_EXPIRED))

    await api.post(REPLIES, headers={**key, "Idempotency-Key": "k1"}, json={"text": "one"})
    await step(services)
    two = await api.post(REPLIES, headers={**key, "Idempotency-Key": "k2"}, json={"text": "two"})
    clock.advance(120_000)
    await step(services)
    assert of_type(services, "Account.TokenRejected")[0]["code"] == 190
    assert graph.sent == []
    assert len(sends(graph)) == 1
    # a reply waiting for new credentials says so
    held = (await api.get(two.json()["status_url"], headers=key)).json()
    assert held["status"] == "held"
    assert held["error"]["class"] == "token_rejected"

    services.writer.run_now(
        services.accounts.rotate_credentials(
            ACCOUNT, {"access_token": ACCESS_TOKEN}, at=0, by="test"
        )
    )
    clock.advance(120_000)
    await step(services, rounds=4)

    assert [s["body"]["message"]["text"] for s in graph.sent] == ["one", "two"]
    assert any(d["payload"]["type"] == "account.token_rejected" for d in _crm(services))
    assert (await api.get(two.json()["status_url"], headers=key)).json()["status"] == "sent"


class Killed(BaseException):
    """The process dies here (not an error anything catches)."""


def _crm(services: Services) -> list[dict[str, Any]]:
    rows = services.delivery_queue.deliveries(ACCOUNT, status=None, limit=500, before_position=None)
    return [{"payload": json.loads(r["body"]), "status": r["status"]} for r in rows]


async def test_a_rate_limit_pauses_the_account_then_sends(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str], clock: MovableClock
) -> None:
    await deliver(api, message("hello", "m-1"))
    await step(services)
    graph.answers.append((400, RATE_LIMITED))

    await api.post(REPLIES, headers={**key, "Idempotency-Key": "k"}, json={"text": "later"})
    await step(services)
    assert graph.sent == []
    assert of_type(services, "Account.SendsPaused")
    clock.advance(24 * 3_600_000)
    await step(services)

    assert [s["body"]["message"]["text"] for s in graph.sent] == ["later"]


async def test_what_meta_would_refuse_is_refused_without_sending(
    api: Client, services: Services, graph: FakeGraphApi, key: dict[str, str]
) -> None:
    # the participant wrote three days ago: a person may still answer, with HUMAN_AGENT
    await deliver(api, message("hello", "m-1", at=int(time.time() * 1000) - 3 * 24 * 3_600_000))
    await step(services)

    long = await api.post(
        REPLIES, headers={**key, "Idempotency-Key": "long"}, json={"text": "é" * 501}
    )
    await step(services)
    human = await api.post(
        REPLIES, headers={**key, "Idempotency-Key": "ok"}, json={"text": "Sorry for the wait!"}
    )
    await step(services)

    # a text Meta would refuse is refused at once (422), never queued to fail later
    assert long.status_code == 422, long.text
    assert "1002 bytes" in long.json()["detail"]
    assert not of_type(services, "Conversation.ReplyFailed")
    assert human.status_code == 202
    assert graph.sent[0]["body"]["tag"] == "HUMAN_AGENT"
    assert graph.sent[0]["body"]["messaging_type"] == "MESSAGE_TAG"


async def test_crm_deliveries_of_a_conversation_leave_in_order_under_retries(
    api: Client, services: Services, crm: FakeCrm, clock: MovableClock
) -> None:
    crm.answers.extend([(503, {"Retry-After": "1"}), (500, {})])
    await deliver(api, message("one", "m-1"), message("two", "m-2"), message("three", "m-3"))
    await step(services)
    for _ in range(4):
        clock.advance(3_600_000)
        await step(services)

    delivered = [
        d["payload"]["data"] for d in crm.delivered() if d["payload"]["type"] == "message.received"
    ]
    assert [d["mid"] for d in delivered] == ["m-1", "m-2", "m-3"]
    assert [d["sequence"] for d in delivered] == sorted(d["sequence"] for d in delivered)
    attempts = [d["status"] for d in crm.received if d["payload"]["data"].get("mid") == "m-1"]
    assert attempts == [503, 500, 200]


async def test_a_410_disables_the_endpoint(api: Client, services: Services, crm: FakeCrm) -> None:
    crm.answers.append((410, {}))
    await deliver(api, message("one", "m-1"), message("two", "m-2"))
    await step(services)

    assert of_type(services, "Account.CrmEndpointDisabled")
    assert len(crm.received) == 1
    endpoint = services.crm_endpoints.get(ACCOUNT)
    assert endpoint.enabled is False


async def test_failed_deliveries_are_listed_with_their_attempts_and_can_be_redelivered(
    api: Client, services: Services, crm: FakeCrm, key: dict[str, str]
) -> None:
    crm.answers.append((500, {}))
    await deliver(api, message("one", "m-1"))
    await step(services)

    failed = (await api.get(f"{BASE}/deliveries", headers=key, params={"status": "failed"})).json()
    [delivery] = failed["deliveries"]
    assert delivery["status"] == "retrying"
    assert delivery["attempts"][0]["status_code"] == 500
    assert delivery["payload"]["type"] == "message.received"

    again = await api.post(f"{BASE}/deliveries/{delivery['id']}/redeliver", headers=key)
    await step(services)
    assert again.status_code == 202
    assert received_ids(crm) == [delivery["id"]]

    everything = await api.post(
        f"{BASE}/deliveries/redeliver", headers=key, params={"since": "2000-01-01T00:00:00Z"}
    )
    await step(services)
    # the message, and the participant's profile (a conversation.updated after it)
    assert everything.json()["redelivered"] == 2
    assert received_ids(crm) == [delivery["id"], delivery["id"]]


async def test_a_dispatcher_killed_after_the_call_delivers_once_more_with_the_same_id(
    api: Client,
    services: Services,
    crm: FakeCrm,
    monkeypatch: pytest.MonkeyPatch,
    clock: MovableClock,
) -> None:
    await deliver(api, message("one", "m-1"))
    services.read_models.catch_up()

    # the first dispatcher delivers, then dies before it records the outcome
    outbox = services.delivery_queue
    real_settle = outbox.settle_many

    def die(*_: Any, **__: Any) -> None:
        raise Killed

    monkeypatch.setattr(outbox, "settle_many", die)
    await services.dispatcher.drain(rounds=1)
    monkeypatch.setattr(outbox, "settle_many", real_settle)
    assert len(received_ids(crm)) == 1

    # another dispatcher takes over once the lease has run out
    await services.dispatcher.drain()
    assert len(received_ids(crm)) == 1  # the lease still holds
    clock.advance(120_000)
    await step(services)
    await step(services)

    ids = received_ids(crm)
    assert len(ids) == 2
    assert ids[0] == ids[1]


async def test_crm_endpoint_management(
    api: Client, services: Services, key: dict[str, str]
) -> None:
    shown = await api.get(f"{BASE}/crm-endpoint", headers=key)
    rotated = await api.put(
        f"{BASE}/crm-endpoint",
        headers=key,
        json={
            "url": "https://93.184.215.14/hooks",
            "event_types": ["message.received"],
            "rotate_secret": True,
        },
    )
    kept = await api.put(
        f"{BASE}/crm-endpoint", headers=key, json={"url": "https://93.184.215.14/v2"}
    )
    bad = await api.put(
        f"{BASE}/crm-endpoint", headers=key, json={"url": "ftp://x", "event_types": []}
    )
    unknown = await api.put(
        f"{BASE}/crm-endpoint",
        headers=key,
        json={"url": "https://93.184.215.14", "event_types": ["nope"]},
    )
    removed = await api.delete(f"{BASE}/crm-endpoint", headers=key)
    gone = await api.get(f"{BASE}/crm-endpoint", headers=key)

    assert "secret" not in shown.json() or shown.json()["secret"] is None
    assert rotated.json()["secret"].startswith("whsec_")
    assert kept.json()["secret"] is None
    assert (bad.status_code, bad.json()["field"]) == (422, "url")
    assert (unknown.status_code, unknown.json()["field"]) == (422, "event_types")
    assert (removed.status_code, gone.status_code) == (204, 404)
    set_event = of_type(services, "Account.CrmEndpointSet")[-1]
    assert set_event["secret"].startswith("gAAAA")  # stored encrypted


# -- CRM endpoints must not reach into our own network (SSRF) ---------------------------------


async def _put_endpoint(services: Services, url: str) -> Any:
    key = bearer(issue_key(services, "account", ACCOUNT))
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as client:
        return await client.put(f"{BASE}/crm-endpoint", headers=key, json={"url": url})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:9/hooks", "must be an https:// URL"),
        ("https://127.0.0.1:9/hooks", "loopback"),
        ("https://localhost/hooks", "loopback"),
        ("https://[::1]/hooks", "loopback"),
        ("https://[::ffff:127.0.0.1]/hooks", "loopback"),
        ("https://10.1.2.3/hooks", "private"),
        ("https://192.168.0.10/hooks", "private"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[fd00:ec2::254]/latest/meta-data/", "metadata"),
        ("https://0.0.0.0/hooks", "unspecified"),
    ],
)
async def test_a_crm_endpoint_on_our_own_network_is_refused_with_a_422_naming_the_problem(
    make_services: Callable[..., Services], url: str, problem: str
) -> None:
    services = make_services("memory://", crm_allow_private_urls=False)
    register_account(services)

    response = await _put_endpoint(services, url)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "url"
    assert problem in response.json()["detail"]
    assert "Account.CrmEndpointSet" not in types(services)


async def test_a_public_https_crm_endpoint_is_accepted(
    make_services: Callable[..., Services],
) -> None:
    services = make_services("memory://", crm_allow_private_urls=False, environment="production")
    register_account(services)

    response = await _put_endpoint(services, "https://93.184.215.14/hooks")

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("allow_private", [False, True])
async def test_production_takes_only_https_crm_endpoints(
    make_services: Callable[..., Services], allow_private: bool
) -> None:
    services = make_services(
        "memory://", crm_allow_private_urls=allow_private, environment="production"
    )
    register_account(services)

    response = await _put_endpoint(services, "http://93.184.215.14/hooks")

    assert response.status_code == 422, response.text
    assert "https://" in response.json()["detail"]


async def test_the_operator_may_allow_private_crm_endpoints_but_never_metadata(
    make_services: Callable[..., Services],
) -> None:
    services = make_services("memory://", crm_allow_private_urls=True)
    register_account(services)

    private = await _put_endpoint(services, "http://127.0.0.1:9/hooks")
    metadata = await _put_endpoint(services, "http://169.254.169.254/latest/meta-data/")

    assert private.status_code == 200, private.text
    assert metadata.status_code == 422
    assert "metadata" in metadata.json()["detail"]


async def test_a_stored_endpoint_on_loopback_is_not_posted_to_once_private_urls_are_off(
    tmp_path: Path, make_services: Callable[..., Services], crm: FakeCrm
) -> None:
    # given an endpoint on loopback, set while private URLs were allowed
    url = f"sqlite:///{tmp_path}/shared.sqlite3"
    before = make_services(url, crm_allow_private_urls=True)
    register_account(before)
    before.writer.run_now(
        before.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )

    # when a dispatcher that does not allow them sends a notification
    services = make_services(url, crm_allow_private_urls=False)
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as client:
        await deliver(client, message("hello", "m-ssrf"))
    await step(services)

    # then nothing reached the address, and the attempt says why
    assert crm.received == []
    rows = services.delivery_queue.deliveries(ACCOUNT, status=None, limit=10, before_position=None)
    assert rows, "a delivery was due"
    errors = [a.get("error") or "" for r in rows for a in (r.get("history") or [])]
    assert errors
    assert all(e.startswith("refused: ") for e in errors), errors


async def test_a_host_that_resolves_to_loopback_when_connecting_is_refused(crm: FakeCrm) -> None:
    # A name that pointed elsewhere when the endpoint was set (DNS rebinding): the address
    # is checked when the delivery connects. The fake resolver stands in for DNS.
    from infrastructure.crm_urls import CrmUrlPolicy
    from infrastructure.crm_webhooks import StandardWebhooksClient, new_secret

    port = crm.url.split(":")[2].split("/")[0]
    crm.secret = new_secret()

    def resolve(host: str, _: int) -> list[str]:
        return ["127.0.0.1"] if host == "crm.test" else []

    for allow_private in (False, True):
        client = StandardWebhooksClient(
            CrmUrlPolicy(allow_private=allow_private, https_only=False, resolve=resolve)
        )
        # (https when refused: refused before any TLS; the fake CRM speaks plain http)
        scheme = "http" if allow_private else "https"
        try:
            result = await client.deliver(
                url=f"{scheme}://crm.test:{port}/hooks",
                secret=crm.secret,
                delivery_id="msg_rebound",
                body='{"type": "message.received"}',
            )
        finally:
            await client.aclose()
        if allow_private:
            assert result.status_code == 200, result
        else:
            assert result.status_code is None
            assert "loopback" in (result.error or "")
            assert crm.received == []
    assert len(crm.received) == 1
