"""`dmledger deliveries`: an operator lists, shows and redelivers an account's CRM
deliveries from the command line, as the REST API does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from application.ingest import sign
from interfaces.cli import main
from interfaces.composition import build, settings_from_environment
from tests.conftest import ACCOUNT, APP_SECRET, TEST_KEY, meta_body, register_account


@pytest.fixture
def failed_delivery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An account whose CRM endpoint does not answer, and one message it was to be told of."""
    for name, value in {
        "DMLEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3",
        "DMLEDGER_SECRET_KEY": TEST_KEY,
        "DMLEDGER_DATA_DIR": str(tmp_path / "var"),
        "DMLEDGER_GRAPH_API_URL": "http://127.0.0.1:9",
        "DMLEDGER_CRM_ALLOW_PRIVATE_URLS": "true",
    }.items():
        monkeypatch.setenv(name, value)
    services = build(settings_from_environment(), announce=lambda _: None)
    try:
        register_account(services)
        services.writer.run_now(
            services.crm_endpoints.set(  # nothing listens on port 9
                ACCOUNT, url="http://127.0.0.1:9/crm", event_types=None, rotate_secret=False, by="t"
            )
        )
        body = meta_body("text")
        services.writer.run_now(services.ingest.command(body, sign(body, APP_SECRET)))
        services.read_models.catch_up()
        asyncio.run(services.dispatcher.drain())
    finally:
        services.close()


def test_an_operator_lists_shows_and_redelivers_a_failed_delivery(
    failed_delivery: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # the failed delivery is listed, with its attempt
    assert main(["deliveries", "list", "--account", ACCOUNT, "--status", "failed"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["ID", "TYPE", "STATUS", "ATTEMPTS"]
    [row] = [line.split() for line in table[1:]]
    delivery_id, kind, status, attempts = row[:4]
    assert (kind, status, attempts) == ("message.received", "retrying", "1")

    # shown whole, as JSON
    assert main(["deliveries", "show", "--account", ACCOUNT, delivery_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == delivery_id
    assert shown["payload"]["type"] == "message.received"
    assert len(shown["attempts"]) == 1

    # redelivered, and who did it is recorded
    assert main(["deliveries", "redeliver", "--account", ACCOUNT, delivery_id]) == 0
    assert "1 deliveries due again" in capsys.readouterr().out
    assert main(["replay", "--account", ACCOUNT, "--format", "jsonl"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [redelivered] = [e for e in events if e["type"] == "Account.DeliveriesRedelivered"]
    assert redelivered["data"]["by"] == "cli"

    # an unknown delivery is the operator's error, not a traceback
    assert main(["deliveries", "show", "--account", ACCOUNT, "nope"]) == 2
    assert "has no delivery nope" in capsys.readouterr().err
