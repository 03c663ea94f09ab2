"""Ingest guarantees on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from litestar.testing import AsyncTestClient

from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import (
    ACCOUNT,
    event_types,
    meta_body,
    meta_json,
    register_account,
    signed_headers,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

MakeServices = Callable[..., Services]


def text_body(mid: str, participant: str = "5500000000000001", text: str = "hi") -> bytes:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["sender"]["id"] = participant
    item["message"]["mid"] = mid
    item["message"]["text"] = text
    return json.dumps(body).encode()


async def post(services: Services, *bodies: bytes) -> list[int]:
    async with AsyncTestClient(app=create_app(services)) as client:
        responses = await asyncio.gather(
            *(
                client.post("/webhooks/instagram", content=b, headers=signed_headers(b))
                for b in bodies
            )
        )
    return [r.status_code for r in responses]


async def test_redelivery_after_a_restart_is_stored_once(
    postgres_url: str, make_services: MakeServices
) -> None:
    # given a message stored by one process, which then stops
    first = make_services(postgres_url)
    register_account(first)
    assert await post(first, meta_body("text")) == [200]
    first.close()

    # when Meta delivers it again to a new process
    second = make_services(postgres_url)
    assert await post(second, meta_body("text")) == [200]

    # then it is stored once
    assert event_types(second).count("Conversation.MessageReceived") == 1


async def test_concurrent_webhooks_for_one_conversation_from_two_processes_are_all_stored(
    postgres_url: str, make_services: MakeServices
) -> None:
    # given two processes that both hold the conversation in memory
    a, b = make_services(postgres_url), make_services(postgres_url)
    register_account(a)
    assert await post(a, text_body("m-0")) == [200]
    assert await post(b, text_body("m-0")) == [200]

    # when each takes a stream of messages for it at the same time
    async def deliver(services: Services, mids: list[str]) -> list[int]:
        return await post(services, *(text_body(mid) for mid in mids))

    statuses = await asyncio.gather(
        deliver(a, [f"a-{i}" for i in range(40)]),
        deliver(b, [f"b-{i}" for i in range(40)]),
    )

    # then every message was answered 200 and is stored exactly once
    assert list(statuses) == [[200] * 40, [200] * 40]  # (gather's list; typed a tuple)
    assert event_types(a).count("Conversation.MessageReceived") == 81


async def test_database_unavailable_is_503_and_stores_nothing(
    postgres_url: str, make_services: MakeServices
) -> None:
    # given a process whose database connection goes through a proxy we can cut
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    through_proxy = urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{proxy.port}"))
    services = make_services(through_proxy)
    register_account(services)
    observer = make_services(postgres_url)
    try:
        async with AsyncTestClient(app=create_app(services)) as client:
            # when the database goes away during a delivery
            proxy.cut()
            body = text_body("lost-while-down")
            down = await client.post(
                "/webhooks/instagram", content=body, headers=signed_headers(body)
            )
            ready = await client.get("/readyz")

            # then Meta is told to deliver again, and nothing is half-stored
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
            assert down.headers["retry-after"]
            assert ready.status_code == 503
            assert event_types(observer) == ["Account.Registered"]

            # and once it is back, Meta's redelivery is stored: like Meta, try again on a
            # 503 (the pool may still be replacing connections the outage broke)
            proxy.restore()
            statuses = []
            for _ in range(10):
                again = await client.post(
                    "/webhooks/instagram", content=body, headers=signed_headers(body)
                )
                statuses.append(again.status_code)
                if again.status_code != 503:
                    break
                await asyncio.sleep(0.5)
            assert statuses[-1] == 200, statuses
            assert "Conversation.MessageReceived" in event_types(observer)
            assert event_types(observer).count("Conversation.MessageReceived") == 1
    finally:
        proxy.close()


async def test_bad_signature_stores_nothing(postgres_url: str, make_services: MakeServices) -> None:
    services = make_services(postgres_url)
    register_account(services)
    body = meta_body("batched")

    async with AsyncTestClient(app=create_app(services)) as client:
        response = await client.post(
            "/webhooks/instagram", content=body, headers=signed_headers(body, "wrong-secret")
        )

    assert response.status_code == 401
    assert event_types(services) == ["Account.Registered"]


async def test_accounts_sharing_one_meta_app_are_served_from_one_body(
    postgres_url: str, make_services: MakeServices
) -> None:
    # given two accounts of one Meta app (one app secret) and a body addressing both
    services = make_services(postgres_url)
    register_account(services)
    register_account(services, "17841400000000002")
    body = meta_json("batched")
    second: dict[str, Any] = body["entry"][1]
    second["id"] = "17841400000000002"
    second["messaging"][0]["recipient"]["id"] = "17841400000000002"
    raw = json.dumps(body).encode()

    assert await post(services, raw) == [200]

    started = [t for t in event_types(services) if t == "Conversation.Started"]
    assert len(started) == 2
    assert ACCOUNT in {a.ig_account_id for a in services.ledger.accounts()}


async def test_during_an_outage_webhooks_and_readiness_probes_fail_fast_then_recover(
    postgres_url: str, make_services: MakeServices
) -> None:
    # given a process whose database goes through a proxy we can cut, serving an account
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    through_proxy = urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{proxy.port}"))
    services = make_services(through_proxy)
    register_account(services)
    observer = make_services(postgres_url)
    try:
        async with AsyncTestClient(app=create_app(services)) as client:
            first = text_body("before")
            assert (
                await client.post(
                    "/webhooks/instagram", content=first, headers=signed_headers(first)
                )
            ).status_code == 200

            # when the database goes away, and the first delivery finds out the hard way
            proxy.cut()
            body = text_body("during")
            await client.post("/webhooks/instagram", content=body, headers=signed_headers(body))

            # then every later delivery and probe is answered 503 at once
            webhook_times, probe_times = [], []
            for _ in range(5):
                started = time.monotonic()
                down = await client.post(
                    "/webhooks/instagram", content=body, headers=signed_headers(body)
                )
                webhook_times.append(time.monotonic() - started)
                assert down.status_code == 503
                started = time.monotonic()
                ready = await client.get("/readyz")
                probe_times.append(time.monotonic() - started)
                assert ready.status_code == 503
            assert max(webhook_times) < 0.5, webhook_times
            assert max(probe_times) < 0.1, probe_times

            # and once it is back, Meta's redelivery is stored, and what was acknowledged
            # before the outage is there
            proxy.restore()
            statuses = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                again = await client.post(
                    "/webhooks/instagram", content=body, headers=signed_headers(body)
                )
                statuses.append(again.status_code)
                if again.status_code != 503:
                    break
                await asyncio.sleep(0.2)
            assert statuses[-1] == 200, statuses
            assert (await client.get("/readyz")).status_code == 200
            assert event_types(observer).count("Conversation.MessageReceived") == 2
    finally:
        proxy.close()
