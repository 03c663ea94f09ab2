"""The account index: an account's events read by position, on SQLite and PostgreSQL.

What the auditor's stream and `replay` read must be the same as the filtered scan of the
whole log they replaced, and a row of the index exists exactly when its event does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError, RecordConflictError, StoredEvent

from application.audit import AuditLog
from application.ledger import Ledger
from domain.account import Account
from domain.api_key import ApiKey
from domain.conversation import Conversation
from domain.identity import account_id, conversation_id
from interfaces.cli import main
from interfaces.composition import Services
from tests.support.raw_sql import sql

MakeServices = Callable[..., Services]
A, B = "17841400000000001", "17841400000000002"


def account(ig_account_id: str) -> Account:
    return Account(
        ig_account_id=ig_account_id,
        username="shop",
        app_secret="gAAAA-secret",
        access_token="gAAAA-token",
        verify_token="gAAAA-verify",
        by="test",
    )


def interleaved_history(ledger: Ledger) -> None:
    """Two accounts whose conversations' events alternate in the log, and an API key."""
    ledger.save(account(A))
    ledger.save(account(B))
    ledger.save(
        ApiKey(key_id="k1", name="audit", role="auditor", ig_account_id=A, secret_hash="h", by="t")
    )
    conversations = {
        (owner, n): Conversation(ig_account_id=owner, participant_id=str(n))
        for owner in (A, B)
        for n in range(3)
    }
    for step in range(4):
        for (owner, n), conversation in conversations.items():
            conversation.receive_message(mid=f"{owner}-{n}-{step}", sent_at=step, text="hi")
            if step == 2 and n == 1:
                conversation.archive(by="test")
            ledger.save(conversation)


def scanned(
    ledger: Ledger, ig_account_id: str, after: int = 0, types: set[str] | None = None
) -> list[tuple[int, UUID, int]]:
    """The account's events as the whole log filtered by aggregate: what the index replaced."""
    ids = {account_id(ig_account_id)} | {conversation_id(ig_account_id, str(n)) for n in range(3)}
    found = []
    for n in ledger.recorder.select_notifications(start=1, limit=10_000):
        topic = n.topic.removeprefix("dmledger:")
        if n.originator_id in ids and n.id > after and (types is None or topic in types):
            found.append((n.id, UUID(str(n.originator_id)), n.originator_version))
    return found


def streamed(audit: AuditLog, ig_account_id: str, **kwargs: Any) -> list[tuple[int, UUID, int]]:
    return [
        (e.position, UUID(e.aggregate_id), e.version) for e in audit.events(ig_account_id, **kwargs)
    ]


def test_an_accounts_stream_is_the_filtered_scan_in_log_order(
    sql_url: str, make_services: MakeServices
) -> None:
    ledger = make_services(sql_url).ledger
    interleaved_history(ledger)
    audit = AuditLog(ledger, page_size=4)

    assert audit.index() is not None
    for ig_account_id in (A, B):
        expected = scanned(ledger, ig_account_id)
        assert len(expected) == 1 + 3 + 12 + 1
        assert streamed(audit, ig_account_id) == expected
        assert streamed(audit, ig_account_id, after=expected[5][0]) == expected[6:]
        archived = {"Conversation.Archived", "Account.Registered"}
        assert streamed(audit, ig_account_id, types=sorted(archived)) == scanned(
            ledger, ig_account_id, types=archived
        )
    assert audit.aggregate_ids(A) == {account_id(A)} | {
        conversation_id(A, str(n)) for n in range(3)
    }


def test_a_refused_insert_leaves_no_row_in_the_index(
    sql_url: str, make_services: MakeServices
) -> None:
    ledger = make_services(sql_url).ledger
    ledger.save(account(A))
    recorder = ledger.recorder
    rows_before = sql(sql_url, "SELECT count(*) FROM {t}_by_account")[0][0]
    fresh = conversation_id(A, "new")
    again = StoredEvent(originator_id=account_id(A), originator_version=1, topic="x", state=b"{}")
    new = StoredEvent(originator_id=fresh, originator_version=1, topic="x", state=b"{}")

    # A new conversation beside an event that is already stored: the insert fails whole.
    with pytest.raises(IntegrityError):
        recorder.insert_events([new, again], owners={fresh: account_id(A)})

    assert sql(sql_url, "SELECT count(*) FROM {t}_by_account")[0][0] == rows_before
    assert sql(
        sql_url, "SELECT count(*) FROM {t}_owners WHERE originator_id = ?", _id(sql_url, fresh)
    ) == [(0,)]
    if sql_url.startswith("postgresql"):
        # Refused because an aggregate it was decided on has moved on: nothing either.
        with pytest.raises(RecordConflictError):
            recorder.insert_events(
                [new], owners={fresh: account_id(A)}, expected_versions={account_id(A): 0}
            )
        assert sql(sql_url, "SELECT count(*) FROM {t}_by_account")[0][0] == rows_before
        assert sql(sql_url, "SELECT count(*) FROM {t}_owners")[0][0] == 1

    recorder.insert_events([new], owners={fresh: account_id(A)})
    assert sql(sql_url, "SELECT count(*) FROM {t}_by_account")[0][0] == rows_before + 1


def _id(url: str, value: UUID) -> Any:
    return value.hex if url.startswith("sqlite") else value


def test_a_log_stored_before_the_index_is_scanned_until_indexed_by_the_command(
    sql_url: str,
    make_services: MakeServices,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    services = make_services(sql_url)
    interleaved_history(services.ledger)
    expected = scanned(services.ledger, A)
    # As a log stored by an earlier dmledger: no index rows, not marked built.
    for statement in (
        "DELETE FROM {t}_by_account",
        "DELETE FROM {t}_owners",
        "DELETE FROM {t}_by_account_built",
    ):
        sql(sql_url, statement)
    audit = AuditLog(services.ledger, page_size=4)
    assert audit.index() is None
    assert streamed(audit, A) == expected

    monkeypatch.setenv("DMLEDGER_DATABASE_URL", sql_url)
    monkeypatch.setenv("DMLEDGER_SECRET_KEY", services.settings.secret_keys[0])
    monkeypatch.setenv("DMLEDGER_DATA_DIR", str(tmp_path / "var"))
    assert main(["audit", "index"]) == 0
    assert "indexed the log by account: 8 accounts and conversations" in capsys.readouterr().out

    assert audit.index() is not None
    assert streamed(audit, A) == expected
    assert streamed(audit, B) == scanned(services.ledger, B)
    assert main(["audit", "index"]) == 0
    assert "already covers the whole log" in capsys.readouterr().out
