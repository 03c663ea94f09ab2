"""One event a read model cannot hold stops no one else: it is tried a few times, parked,
reported, and every other event (of every account) goes on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from application.ledger_writer import Changes
from domain.conversation import Conversation
from domain.identity import conversation_id
from interfaces.cli import main
from interfaces.composition import Services
from interfaces.http.app import create_app
from projections.parked import parked_events
from tests.conftest import ACCOUNT, PARTICIPANT, TEST_KEY, deliver, register_account

OTHER = "17841400000000002"


@pytest.fixture
def cli_env(sql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMLEDGER_DATABASE_URL", sql_url)
    monkeypatch.setenv("DMLEDGER_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("DMLEDGER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DMLEDGER_GRAPH_API_URL", "http://127.0.0.1:9")


def record_poison(services: Services, account: str, participant: str) -> None:
    """An event no read model can hold, stored as a bug or an old version might have:
    a NUL in its text (PostgreSQL) and a time past 64 bits (both backends)."""

    def command(changes: Changes) -> None:
        found = changes.get(conversation_id(account, participant), Conversation)
        if found is None:
            found = Conversation(ig_account_id=account, participant_id=participant)
            changes.add(found)
        found.receive_message(mid="mid-poison", sent_at=2**63, text="bad\x00text")

    services.writer.run_now(command)


def test_a_poison_event_is_parked_and_every_other_account_goes_on(
    sql_url: str, make_services: Callable[..., Services]
) -> None:
    # given a poison event of one account, then a good message of another
    services = make_services(sql_url)
    register_account(services)
    register_account(services, OTHER)
    record_poison(services, ACCOUNT, PARTICIPANT)
    deliver(services, OTHER, "mid-good", "hello from the other account")

    # when the runners follow the log
    services.read_models.start()

    # then every read model reaches the head, the other account's message is there
    for name in services.read_models.rebuildable():
        services.read_models.wait_for(name, timeout=20)
    history = services.read_models.message_history
    other = str(conversation_id(OTHER, PARTICIPANT))
    assert [m["text"] for m in history.page(other, limit=10)] == ["hello from the other account"]
    # and the poison is parked, once per read model that could not hold it, with its cause
    parked = parked_events(services.read_models.message_history.engine)
    assert {p.projection for p in parked} >= {"message_history", "conversation_list"}
    assert all(p.topic.endswith("MessageReceived") and p.attempts == 3 for p in parked)
    assert all(p.error for p in parked)


def test_status_and_retry_parked_report_parked_events(
    sql_url: str,
    make_services: Callable[..., Services],
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    services = make_services(sql_url)
    register_account(services)
    record_poison(services, ACCOUNT, PARTICIPANT)
    services.read_models.catch_up()
    services.close()

    assert main(["projections", "status"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].split() == ["PROJECTION", "POSITION", "HEAD", "LAG", "PARKED"]
    by_name = {line.split()[0]: line.split() for line in status[1:]}
    assert by_name["message_history"][4] == "1"
    assert by_name["message_history"][3] == "0"  # parked, so not behind

    assert main(["projections", "parked"]) == 0
    listed = capsys.readouterr().out
    assert "message_history" in listed
    assert "MessageReceived" in listed

    # the cause is not fixed: the event stays parked, and the command says so
    assert main(["projections", "retry-parked"]) == 1
    out = capsys.readouterr().out
    assert "0 applied" in out
    assert "still parked" in out


async def test_readyz_reports_parked_events_and_a_projection_that_stands_still(
    sql_url: str, make_services: Callable[..., Services]
) -> None:
    services = make_services(sql_url, ready_stall_seconds=0)
    register_account(services)
    record_poison(services, ACCOUNT, PARTICIPANT)
    services.read_models.catch_up()
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as client:
        # a parked event: degraded, still 200 (webhooks are still stored)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert any("message_history has parked 1" in r for r in ready.json()["reasons"])
        by_name = {p["name"]: p for p in ready.json()["projections"]}
        assert by_name["message_history"]["parked"] == 1
        assert by_name["message_history"]["lag"] == 0
        strict = await client.get("/readyz", params={"strict": "true"})
        assert strict.status_code == 503
        assert strict.headers["content-type"] == "application/problem+json"

        # a message no runner follows: the projections stand still while it waits
        deliver(services, ACCOUNT, "mid-late", "late")
        await client.get("/readyz")
        later = (await client.get("/readyz")).json()
        assert any("conversation_list has not moved" in r for r in later["reasons"])
        assert {p["name"]: p for p in later["projections"]}["conversation_list"]["lag"] >= 1
