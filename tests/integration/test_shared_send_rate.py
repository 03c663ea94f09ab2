"""Meta's per-account send rates hold across dispatcher processes: two dispatchers on one
database, with the limits set low, never send more of an account's replies in one second
than the limit, for text and for audio, counted by what the fake Send API received."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import (
    ACCESS_TOKEN,
    ACCOUNT,
    bearer,
    issue_key,
    meta_json,
    register_account,
    signed_headers,
)
from tests.support.fake_graph import FakeGraphApi

pytestmark = pytest.mark.postgres

TEXT_LIMIT, MEDIA_LIMIT = 3, 1
PARTICIPANTS = [f"9000{i}" for i in range(6)]
TEXTS_EACH = 3
AUDIO = "https://shop.example/hello.m4a"


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    fake = FakeGraphApi(ACCESS_TOKEN)
    yield fake
    fake.close()


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


@pytest.fixture
async def web(processes: dict[str, Services]) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(processes["web"], run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as client:
        yield client


async def deliver(web: AsyncTestClient[Any], participant: str) -> None:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["sender"]["id"] = participant
    item["timestamp"] = int(time.time() * 1000)
    item["message"] = {"mid": f"m-{participant}", "text": "Hello"}
    raw = json.dumps(body).encode()
    response = await web.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    assert response.status_code == 200, response.text


async def dispatch_until(
    dispatchers: list[Services], done: Callable[[], bool], *, deadline_seconds: float
) -> None:
    """Both dispatchers dispatch what is due, side by side, until `done` or the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while not done():
        assert time.monotonic() < deadline, "the replies were not all sent in time"
        await asyncio.gather(*(d.dispatcher.drain() for d in dispatchers))
        await asyncio.sleep(0.02)  # what was put back waits for its second


async def test_two_dispatchers_together_keep_each_accounts_sends_per_second_within_metas_limits(
    processes: dict[str, Services], web: AsyncTestClient[Any], graph: FakeGraphApi
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
    await dispatch_until(dispatchers, lambda: len(graph.sent) >= expected, deadline_seconds=30)

    # then every reply went, and no second saw more than the limit of either class
    def kind(send: dict[str, Any]) -> str:
        return "media" if "attachment" in send["body"]["message"] else "text"

    per_second = Counter((kind(s), int(s["at"])) for s in graph.sent)
    assert len(graph.sent) == expected
    assert max(n for (k, _), n in per_second.items() if k == "text") <= TEXT_LIMIT
    assert max(n for (k, _), n in per_second.items() if k == "media") <= MEDIA_LIMIT
    # the limit was what held them: the text replies took at least four seconds
    assert len({second for (k, second) in per_second if k == "text"}) >= 4
