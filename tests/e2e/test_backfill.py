"""Backfill: an account's existing conversations, read from the fake Graph API's
Conversations API through `dmledger accounts backfill` and `POST .../backfill`, stored once
however often it runs, answered by no rule, and told to the CRM only when asked."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from application.rules import RuleDefinition
from domain.identity import conversation_id
from infrastructure.settings import Settings
from interfaces.cli import main
from interfaces.composition import Services, build
from interfaces.dev_graph_history import FakeHistory
from interfaces.http.app import create_app
from tests.conftest import (
    ACCOUNT,
    TEST_KEY,
    bearer,
    issue_key,
    meta_json,
    register_account,
    signed_headers,
)
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi

PARTICIPANTS = ["5500000000000101", "5500000000000102", "5500000000000103"]
START = int(time.time() * 1000) - 3 * 24 * 3_600_000  # three days ago
ALREADY_STORED = "aWdfmid-0-39"
"""The newest message of the first conversation, which also came by webhook."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    url = (
        f"sqlite:///{tmp_path}/ledger.sqlite3"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    for name, value in {
        "DMLEDGER_DATABASE_URL": url,
        "DMLEDGER_SECRET_KEY": TEST_KEY,
        "DMLEDGER_DATA_DIR": str(tmp_path / "var"),
        "DMLEDGER_CRM_ALLOW_PRIVATE_URLS": "true",
    }.items():
        monkeypatch.setenv(name, value)
    return url


@pytest.fixture
def history(graph: FakeGraphApi, monkeypatch: pytest.MonkeyPatch) -> FakeHistory:
    """Three conversations of 40 messages each, every third one the shop's."""
    fake = FakeHistory(ACCOUNT)
    for n, participant in enumerate(PARTICIPANTS):
        fake.add(
            participant,
            [
                (
                    f"aWdfmid-{n}-{i}",
                    i % 3 != 2,
                    f"message {i} of {participant}",
                    START + i * 60_000,
                )
                for i in range(40)
            ],
        )
    graph.history = fake
    monkeypatch.setenv("DMLEDGER_GRAPH_API_URL", graph.url)
    return fake


@pytest.fixture
def services(database: str, history: FakeHistory, crm: FakeCrm) -> Iterator[Services]:
    built = build(Settings.from_environ(os.environ), announce=lambda _: None)
    register_account(built)
    # a rule every backfilled message from a participant would trigger
    rule = {"name": "any", "triggers": [{"type": "keyword", "value": "message"}], "reply": "Hi!"}
    built.writer.run_now(built.rules.add(ACCOUNT, msgspec.convert(rule, RuleDefinition), by="test"))
    view = built.writer.run_now(
        built.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret
    yield built
    built.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The command's status and what it printed on standard output (standard error says
    which database, and logs)."""
    capsys.readouterr()
    status = main(list(argv))
    return status, capsys.readouterr().out


def settle(services: Services) -> None:
    for _ in range(3):
        services.read_models.catch_up()
        asyncio.run(services.dispatcher.drain())


def messages_of(client: TestClient[Any], headers: dict[str, str], participant: str) -> list[Any]:
    cid = conversation_id(ACCOUNT, participant)
    url = f"/api/v1/accounts/{ACCOUNT}/conversations/{cid}/messages"
    page = client.get(url, params={"limit": 100}, headers=headers)
    assert page.status_code == 200, page.text
    messages: list[Any] = page.json()["messages"]
    return messages


def test_a_backfill_fills_the_deployment_once_however_often_it_runs(
    services: Services,
    history: FakeHistory,
    graph: FakeGraphApi,
    crm: FakeCrm,
    capsys: pytest.CaptureFixture[str],
) -> None:
    headers = bearer(issue_key(services))
    app = create_app(services, run_projections=False, run_dispatcher=False)
    with TestClient(app=app) as client:
        # given the newest message of one conversation, which came by webhook
        body = meta_json("text")
        item = body["entry"][0]["messaging"][0]
        item["sender"]["id"] = PARTICIPANTS[0]
        item["timestamp"] = START + 39 * 60_000
        item["message"] = {"mid": ALREADY_STORED, "text": "hi there"}
        raw = json.dumps(body).encode()
        assert (
            client.post("/webhooks/instagram", content=raw, headers=signed_headers(raw)).status_code
            == 200
        )
        settle(services)
        sends_before = len(graph.sent)

        # when the account is backfilled, twice
        first = run(capsys, "accounts", "backfill", "--account", ACCOUNT)
        calls_of_first = list(history.calls)
        second = run(capsys, "accounts", "backfill", "--account", ACCOUNT)
        settle(services)

        # then 119 messages were new the first time, none the second
        assert first == (0, f"backfilled {ACCOUNT}: 3 conversations, 120 messages read, 119 new\n")
        assert second == (0, f"backfilled {ACCOUNT}: 3 conversations, 120 messages read, 0 new\n")
        # each conversation holds its 40 messages once, in Meta's order, ours as outbound
        for n, participant in enumerate(PARTICIPANTS):
            listed = messages_of(client, headers, participant)
            assert [m["mid"] for m in listed] == [f"aWdfmid-{n}-{i}" for i in range(40)]
            directions = {m["direction"] for i, m in enumerate(listed) if i % 3 == 2}
            assert directions == {"outbound"}
        conversations = client.get(f"/api/v1/accounts/{ACCOUNT}/conversations", headers=headers)
        assert len(conversations.json()["conversations"]) == 3
        # no rule answered history, the CRM heard only of the webhook's message
        assert len(graph.sent) == sends_before
        received = [d for d in crm.delivered() if d["payload"]["type"] == "message.received"]
        assert [d["payload"]["data"]["mid"] for d in received] == [ALREADY_STORED]
    # 7 calls a run: a page of conversations, 2 of each one's messages (that they are
    # spaced to Meta's 2 calls a second is tested on a fake clock: tests/unit/test_backfill.py;
    # the gaps measured here on the wall clock shrink when the machine is loaded)
    assert len(calls_of_first) == 7


def test_an_admin_starts_a_backfill_over_http_and_follows_it(
    services: Services, history: FakeHistory, crm: FakeCrm
) -> None:
    app = create_app(services, run_projections=False, run_dispatcher=False)
    admin = bearer(issue_key(services))
    reader = bearer(issue_key(services, "account", ACCOUNT, name="crm"))
    url = f"/api/v1/accounts/{ACCOUNT}/backfill"
    with TestClient(app=app) as client:
        # an account key may not start one
        refused = client.post(url, headers=reader)
        assert refused.status_code == 403, refused.text
        assert client.get(url, headers=admin).status_code == 404  # none started yet

        # when an admin starts one, asking for the CRM to be told, from a moment on
        since = "1970-01-01T00:00:00Z"
        started = client.post(url, params={"since": since, "notify_crm": "true"}, headers=admin)
        assert started.status_code == 202, started.text
        assert started.headers["location"] == url
        deadline = time.monotonic() + 30
        status = started.json()
        while status["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a background run's status, as a client does
            status = client.get(url, headers=admin).json()

        # then it is done, and the CRM hears of each message, marked backfilled
        assert status["state"] == "done", status
        assert (status["conversations"], status["messages"], status["stored"]) == (3, 120, 120)
        settle(services)
        received = [
            d["payload"] for d in crm.delivered() if d["payload"]["type"] == "message.received"
        ]
        assert len(received) == 81  # 27 of each conversation's 40 are the participant's
        assert all(p["data"]["backfilled"] is True for p in received)
        echoed = [d["payload"] for d in crm.delivered() if d["payload"]["type"] == "message.echoed"]
        assert len(echoed) == 39


def test_a_since_in_the_future_reads_the_list_and_stores_nothing(
    services: Services, history: FakeHistory, capsys: pytest.CaptureFixture[str]
) -> None:
    status, said = run(
        capsys, "accounts", "backfill", "--account", ACCOUNT, "--since", "2999-01-01T00:00Z"
    )

    assert (status, said) == (0, f"backfilled {ACCOUNT}: 0 conversations, 0 messages read, 0 new\n")
    assert len(history.calls) == 1


def test_a_backfill_of_an_unknown_account_says_so(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    status = main(["accounts", "backfill", "--account", "17841400000009999"])

    assert status != 0
    assert "17841400000009999" in capsys.readouterr().err
