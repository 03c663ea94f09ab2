"""`dmledger accounts list` shows what stands between each account and the Send API."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from application.delivery import MetaError
from application.sending import sends_paused, token_rejected
from interfaces.cli import main
from interfaces.composition import build, settings_from_environment
from tests.conftest import ACCOUNT, TEST_KEY, register_account

OTHER = "17841400000000002"


def test_accounts_list_shows_a_rejected_token_and_paused_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DMLEDGER_DATABASE_URL", f"sqlite:///{tmp_path}/ledger.sqlite3")
    monkeypatch.setenv("DMLEDGER_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("DMLEDGER_DATA_DIR", str(tmp_path / "var"))
    services = build(settings_from_environment(), announce=lambda _: None)
    try:
        register_account(services)
        register_account(services, OTHER)
        now = int(time.time() * 1000)
        services.writer.run_now(token_rejected(ACCOUNT, MetaError(190, None, "bad token"), now))
        services.writer.run_now(sends_paused(OTHER, until=now + 3_600_000, code=4, reason="x"))
    finally:
        services.close()

    assert main(["accounts", "list"]) == 0
    table = capsys.readouterr().out.splitlines()

    assert table[0].split() == ["INSTAGRAM", "ID", "USERNAME", "STATUS", "SENDING", "REGISTERED"]
    sending = {line.split()[0]: line.split()[3] for line in table[1:]}
    assert sending[ACCOUNT] == "token-rejected"
    assert sending[OTHER].startswith("paused-until-")
