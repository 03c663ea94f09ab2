"""A long conversation through the HTTP app: what Meta delivers again, after a restart, is
stored once, and the conversation's snapshots do not grow with its messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    event_types,
    meta_body,
    meta_json,
    register_account,
    signed_headers,
)

CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
KINDS = [
    "text",
    "echo",
    "edit",
    "reaction",
    "unreaction",
    "read",
    "postback_icebreaker",
    "postback_button",
    "referral_igme",
    "unknown_item",
]
"""Every kind of item that a conversation knows again by its key."""


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def lasting_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database that outlives a process (not `memory://`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    return url


def text_body(n: int) -> bytes:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["message"] = {"mid": f"long-{n:06d}", "text": f"message {n}"}
    item["timestamp"] += n
    return json.dumps(body).encode()


def fill(services: Services, start: int, stop: int) -> None:
    """Deliver messages `start` to `stop` as the webhook handler does (its ingest command),
    many to a transaction, which is quicker than a request each."""
    commands = [
        services.ingest.command(body, signed_headers(body)["x-hub-signature-256"])
        for body in map(text_body, range(start, stop))
    ]
    futures = services.writer.run_all(commands)
    assert all(f.result().recorded == 1 for f in futures)


def latest_snapshot(services: Services) -> tuple[int, int]:
    """The version and the size in bytes of the conversation's latest stored snapshot."""
    assert services.ledger.snapshots is not None
    recorder = services.ledger.snapshots.recorder
    [latest] = recorder.select_events(CONVERSATION, desc=True, limit=1)
    return latest.originator_version, len(latest.state)


async def deliver(services: Services, kinds: list[str]) -> list[int]:
    # Without the runners: automation following the log (an echo pauses it) would add
    # events of its own, whenever it catches up.
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as client:
        statuses = []
        for kind in kinds:
            body = meta_body(kind)
            answer = await client.post(
                "/webhooks/instagram", content=body, headers=signed_headers(body)
            )
            statuses.append(answer.status_code)
        return statuses


async def test_a_long_conversation_refuses_redeliveries_after_a_restart_with_small_snapshots(
    lasting_url: str, make_services: Callable[..., Services]
) -> None:
    # given a conversation that received one item of each kind, then 600 messages
    first = make_services(lasting_url)
    register_account(first)
    assert await deliver(first, KINDS) == [200] * len(KINDS)
    fill(first, 0, 600)
    at_600 = latest_snapshot(first)
    # and 600 more
    fill(first, 600, 1_200)
    at_1200 = latest_snapshot(first)
    stored = event_types(first)

    # then its snapshots, past each interval, stay the same size
    assert at_600[0] > 500
    assert at_1200[0] > 1_000
    assert at_1200[1] <= at_600[1] + 64, (at_600, at_1200)

    # when Meta delivers every item again to a process that has just started on the same
    # database (nothing cached: it loads the conversation from its snapshot)
    restarted = make_services(lasting_url)
    answers = await deliver(restarted, [*KINDS, "text"])

    # then each is answered 200 and none is stored again
    assert answers == [200] * (len(KINDS) + 1)
    assert event_types(restarted) == stored
    # and a new message is still stored
    fill(restarted, 1_200, 1_201)
    assert len(event_types(restarted)) == len(stored) + 1
