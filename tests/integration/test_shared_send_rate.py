"""Meta's per-account send rates hold across dispatcher processes: two dispatchers on one
database, with the limits set low, never send more of an account's replies in one second
than the limit, for text and for audio, counted by what the fake Send API received.

The processes' clock stands still and the test moves it on one second at a time, so a
second is what the dispatchers were told it is, not what a loaded machine's wall clock
makes of a request's arrival (a send claimed at .999 of one second reaches the fake in
the next: counting arrivals by the wall clock flaked under CI load)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from tests.conftest import (
    ACCOUNT,
    bearer,
    issue_key,
    meta_json,
    register_account,
    signed_headers,
)
from tests.support.clock import MovableClock
from tests.support.fake_graph import FakeGraphApi

pytestmark = pytest.mark.postgres

TEXT_LIMIT, MEDIA_LIMIT = 3, 1
PARTICIPANTS = [f"9000{i}" for i in range(6)]
TEXTS_EACH = 3
AUDIO = "https://shop.example/hello.m4a"


@pytest.fixture
def processes(
    postgres_url: str, make_services: Callable[..., Services], graph: FakeGraphApi
) -> dict[str, Services]:
    """A web, a projection and two dispatcher processes' services on one database."""
    limits = {"text_sends_per_second": TEXT_LIMIT, "media_sends_per_second": MEDIA_LIMIT}
    web = make_services(postgres_url, graph_api_url=graph.url)
    register_account(web)
    built = {"web": web, "project": make_services(postgres_url, graph_api_url=graph.url)}
    for name in ("dispatch-1", "dispatch-2"):
        built[name] = make_services(postgres_url, graph_api_url=graph.url, **limits)
        built[name].writer.start()
    return built


async def deliver(web: AsyncTestClient[Any], participant: str) -> None:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["sender"]["id"] = participant
    item["timestamp"] = int(time.time() * 1000)
    item["message"] = {"mid": f"m-{participant}", "text": "Hello"}
    raw = json.dumps(body).encode()
    response = await web.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    assert response.status_code == 200, response.text


async def dispatch_second_by_second(
    dispatchers: list[Services], graph: FakeGraphApi, clock: MovableClock, expected: int
) -> list[list[dict[str, Any]]]:
    """Both dispatchers dispatch what is due, side by side, until nothing more goes in the
    clock's second; then the clock moves on a second. What the fake received, by second."""
    by_second: list[list[dict[str, Any]]] = []
    clock.stop(at=(clock.now_ms() // 1000 + 1) * 1000)
    while len(graph.sent) < expected:
        assert len(by_second) < 4 * expected, "the replies were not all sent"
        before = len(graph.sent)
        while True:
            seen = len(graph.sent)
            await asyncio.gather(*(d.dispatcher.drain() for d in dispatchers))
            if len(graph.sent) == seen:
                break
        by_second.append(graph.sent[before:])
        clock.advance(1000)
    return by_second


async def test_two_dispatchers_together_keep_each_accounts_sends_per_second_within_metas_limits(
    processes: dict[str, Services],
    web: AsyncTestClient[Any],
    graph: FakeGraphApi,
    clock: MovableClock,
) -> None:
    key = bearer(issue_key(processes["web"], "account", ACCOUNT))
    # given six conversations, four with three text replies queued and two with two audio
    for participant in PARTICIPANTS:
        await deliver(web, participant)
    for index, participant in enumerate(PARTICIPANTS):
        audio = index >= 4
        for n in range(2 if audio else TEXTS_EACH):
            body = (
                {"attachment_url": AUDIO, "attachment_type": "audio"}
                if audio
                else {"text": f"Reply {n}"}
            )
            url = (
                f"/api/v1/accounts/{ACCOUNT}/conversations/"
                f"{conversation_id(ACCOUNT, participant)}/replies"
            )
            accepted = await web.post(
                url, json=body, headers={**key, "idempotency-key": f"{participant}-{n}"}
            )
            assert accepted.status_code == 202, accepted.text
    processes["project"].read_models.catch_up()
    processes["project"].read_models.catch_up()
    expected = 4 * TEXTS_EACH + 2 * 2

    # when two dispatchers send them side by side
    dispatchers = [processes["dispatch-1"], processes["dispatch-2"]]
    by_second = await dispatch_second_by_second(dispatchers, graph, clock, expected)

    # then every reply went, and no second saw more than the limit of either class
    def kind(send: dict[str, Any]) -> str:
        return "media" if "attachment" in send["body"]["message"] else "text"

    per_second = [Counter(kind(s) for s in sends) for sends in by_second]
    assert len(graph.sent) == expected
    assert max(counts["text"] for counts in per_second) == TEXT_LIMIT
    assert max(counts["media"] for counts in per_second) == MEDIA_LIMIT
    # the limit was what held them: the twelve text replies took four seconds, 3 a second
    assert [counts["text"] for counts in per_second][:4] == [TEXT_LIMIT] * 4
