"""`dmledger replay` and `dmledger audit`, as an auditor uses them, on SQLite and PostgreSQL.

The tampering is done as an intruder with database access would: SQL on the tables.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from application.ingest import sign
from application.ledger import Ledger
from domain.conversation import Conversation
from domain.identity import conversation_id
from infrastructure.persistence import persistence_env
from infrastructure.settings import Settings
from interfaces.cli import main
from interfaces.composition import build
from tests.conftest import (
    ACCESS_TOKEN,
    ACCOUNT,
    APP_SECRET,
    PARTICIPANT,
    TEST_KEY,
    VERIFY_TOKEN,
    meta_json,
    register_account,
)

OTHER = "17841400000000002"
CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
Sql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Sql]:
    """A database URL for the CLI (in its environment) and a way to run SQL on it."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        url = f"sqlite:///{path}"
        import sqlite3

        def run_sqlite(statement: str, *params: Any) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as conn:
                return conn.execute(statement, params).fetchall()

        run: Sql = run_sqlite
    else:
        url = request.getfixturevalue("postgres_url")
        base, _, query = url.partition("?schema=")

        def run_postgres(statement: str, *params: Any) -> list[tuple[Any, ...]]:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'SET search_path TO "{query}"')
                cursor = conn.execute(
                    statement.replace("stored_events", "dmledger_events").replace(
                        "rowid", "notification_id"
                    ),
                    params,
                )
                return cursor.fetchall() if cursor.description else []

        run = run_postgres
    for name, value in {
        "DMLEDGER_DATABASE_URL": url,
        "DMLEDGER_SECRET_KEY": TEST_KEY,
        "DMLEDGER_DATA_DIR": str(tmp_path / "var"),
    }.items():
        monkeypatch.setenv(name, value)
    return url, run


def settings() -> Settings:
    return Settings.from_environ(os.environ)


def deliver(
    services: Any, mid: str, *, account: str = ACCOUNT, participant: str = PARTICIPANT
) -> None:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["sender"]["id"] = participant
    item["recipient"]["id"] = account
    item["message"] = {"mid": mid, "text": f"message {mid}"}
    raw = json.dumps(body).encode()
    services.writer.run_now(services.ingest.command(raw, sign(raw, APP_SECRET)))


@pytest.fixture
def history(database: tuple[str, Sql]) -> None:
    """Account: registered, then m-1, m-2, m-3 from one participant; another account between."""
    services = build(settings(), announce=lambda _: None)
    try:
        register_account(services)
        register_account(services, OTHER)
        deliver(services, "m-1")
        deliver(services, "o-1", account=OTHER)
        deliver(services, "m-2")
        deliver(services, "m-3")
        services.read_models.catch_up()
    finally:
        services.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    # Every command names its database on stderr first; these tests read what follows.
    err = "".join(
        line
        for line in captured.err.splitlines(keepends=True)
        if not line.startswith("dmledger: database ")
    )
    return status, captured.out + err


def positions(sql: Sql, mid: str) -> int:
    rows = sql("SELECT rowid, state FROM stored_events")
    return next(int(p) for p, state in rows if f'"mid":"{mid}"'.encode() in bytes(state))


# -- replay ------------------------------------------------------------------------------


def test_replay_prints_the_accounts_events_as_json_lines(
    history: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run(capsys, "replay", "--account", ACCOUNT, "--format", "jsonl")

    events = [json.loads(line) for line in out.splitlines()]
    assert status == 0
    assert [e["type"].split(".")[1] for e in events] == [
        "Registered",
        "Started",
        "MessageReceived",
        "MessageReceived",
        "MessageReceived",
    ]
    assert "o-1" not in out
    assert events[0]["data"]["app_secret"] == "<redacted>"


def test_replay_until_a_time_between_two_events_stops_there(
    history: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = run(capsys, "replay", "--account", ACCOUNT, "--format", "jsonl")
    events = [json.loads(line) for line in out.splitlines()]
    a, b = (
        datetime.fromisoformat(events[3]["timestamp"]),
        datetime.fromisoformat(events[4]["timestamp"]),
    )

    status, until = run(
        capsys,
        "replay",
        "--account",
        ACCOUNT,
        "--until",
        (a + (b - a) / 2).isoformat(),
        "--format",
        "jsonl",
    )

    assert status == 0
    assert [json.loads(line) for line in until.splitlines()] == events[:4]


def test_replay_exports_to_a_file_and_prints_its_digest(
    history: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export.jsonl"

    status, summary = run(capsys, "replay", "--account", ACCOUNT, "--out", str(out))

    exported = out.read_bytes()
    assert status == 0
    assert len(exported.splitlines()) == 5
    assert f"exported 5 events of account {ACCOUNT} to {out}" in summary
    assert hashlib.sha256(exported).hexdigest() in summary


def test_replay_as_a_table_hides_credentials(
    history: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run(capsys, "replay", "--account", ACCOUNT, "--types", "Account.Registered")

    assert status == 0
    assert out.splitlines()[0].split() == [
        "POSITION",
        "TYPE",
        "AGGREGATE",
        "VERSION",
        "RECORDED",
        "AT",
        "DATA",
    ]
    assert "Account.Registered" in out
    assert "gAAAA" not in out


def test_replay_shows_no_secret_nor_its_ciphertext_in_any_format(
    database: tuple[str, Sql],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given an account registered, given a CRM endpoint, its credentials rotated and
    # re-encrypted: every event that carries a secret
    monkeypatch.setenv("DMLEDGER_CRM_ALLOW_PRIVATE_URLS", "yes")
    rotated = {"app_secret": "app-2", "access_token": "token-2", "verify_token": "verify-2"}
    services = build(settings(), announce=lambda _: None)
    try:
        register_account(services)
        endpoint = services.writer.run_now(
            services.crm_endpoints.set(
                ACCOUNT,
                url="http://127.0.0.1:9/hooks",
                event_types=None,
                rotate_secret=False,
                by="test",
            )
        )
        services.writer.run_now(
            services.accounts.rotate_credentials(ACCOUNT, dict(rotated), at=0, by="test")
        )
        services.writer.run_now(services.accounts.reencrypt(ACCOUNT, by="test"))
        stored = [vars(event) for _, event in services.ledger.account_history(ACCOUNT)]
    finally:
        services.close()
    assert endpoint.secret is not None
    assert endpoint.secret.startswith("whsec_")
    secrets = {APP_SECRET, ACCESS_TOKEN, VERIFY_TOKEN, endpoint.secret, *rotated.values()}
    # Fernet tokens, whatever field they are stored in: 3 + 1 + 3 + 3 of them
    ciphertexts = {
        value
        for data in stored
        for value in data.values()
        if isinstance(value, str) and value.startswith("gAAAA")
    }
    assert len(ciphertexts) == 10

    # when the account's events are printed in every format, under both names
    outputs: dict[str, str] = {}
    for command in ("replay", "events"):
        for fmt in ("table", "jsonl"):
            status, out = run(capsys, command, "--account", ACCOUNT, "--format", fmt)
            assert status == 0, out
            outputs[f"{command} {fmt}"] = out
            export = tmp_path / f"{command}.{fmt}"
            status, out = run(
                capsys, command, "--account", ACCOUNT, "--format", fmt, "--out", str(export)
            )
            assert status == 0, out
            outputs[f"{command} {fmt} --out"] = out + export.read_text()

    # then none shows a secret or its ciphertext; JSON lines say where one was
    for name, out in outputs.items():
        assert "CrmEndpointSet" in out, name
        for secret in (*secrets, *ciphertexts, "whsec_", "gAAAA"):
            assert secret not in out, f"{name} shows {secret}"
    events = [json.loads(line) for line in outputs["replay jsonl"].splitlines()]
    shown = {e["type"]: e["data"] for e in events}
    assert shown["Account.CrmEndpointSet"]["secret"] == "<redacted>"
    assert shown["Account.CrmEndpointSet"]["url"] == "http://127.0.0.1:9/hooks"
    for name in rotated:
        assert shown["Account.Registered"][name] == "<redacted>"
        assert shown["Account.CredentialsRotated"][name] == "<redacted>"
        assert shown["Account.CredentialsReencrypted"][name] == "<redacted>"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--account", "999"], "not registered"),
        (["--account", ACCOUNT, "--until", "noon"], "--until must be an RFC 3339 time"),
        (["--account", ACCOUNT, "--until", "2026-01-01T10:00:00"], "time zone"),
        (["--account", ACCOUNT, "--types", "Nope.Never"], "unknown event type Nope.Never"),
    ],
)
def test_replay_refuses_bad_arguments(
    history: None, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out = run(capsys, "replay", *argv)

    assert status == 2
    assert message in out


# -- audit verify ------------------------------------------------------------------------


def test_verify_passes_on_an_untouched_log(
    history: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run(capsys, "audit", "verify")

    assert status == 0, out
    assert "checked 8 events of the whole log" in out
    assert "intact" in out


def test_verify_finds_an_altered_payload(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    _, sql = database
    position = positions(sql, "m-2")
    [(state,)] = sql(_q(sql, "SELECT state FROM stored_events WHERE rowid = ?"), position)
    # The text is sealed (application/content.py): the intruder edits what is in clear.
    edited = bytes(state).replace(b'"mid":"m-2"', b'"mid":"m-X"')
    assert edited != bytes(state)
    sql(_q(sql, "UPDATE stored_events SET state = ? WHERE rowid = ?"), edited, position)

    status, out = run(capsys, "audit", "verify")

    assert status == 1
    assert f"BROKEN (altered) at position {position}" in out


def test_verify_finds_a_deleted_event(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    _, sql = database
    position = positions(sql, "m-2")
    sql(_q(sql, "DELETE FROM stored_events WHERE rowid = ?"), position)

    status, out = run(capsys, "audit", "verify")

    assert status == 1
    assert "BROKEN (deleted)" in out
    assert f"version 3 of aggregate {CONVERSATION}" in out


def test_verify_finds_a_deleted_newest_event(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    _, sql = database
    sql(_q(sql, "DELETE FROM stored_events WHERE rowid = ?"), positions(sql, "m-3"))

    status, out = run(capsys, "audit", "verify", "--account", ACCOUNT)

    assert status == 1
    assert "BROKEN (deleted)" in out


def test_verify_finds_a_reordered_event(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    # given two events that swap places in the log
    _, sql = database
    first, second = positions(sql, "m-1"), positions(sql, "o-1")
    for old, new in ((first, -1), (second, first), (-1, second)):
        sql(_q(sql, "UPDATE stored_events SET rowid = ? WHERE rowid = ?"), new, old)

    status, out = run(capsys, "audit", "verify")

    assert status == 1
    assert f"BROKEN (reordered) at position {first}" in out
    assert f"recorded at position {second}" in out


def test_verify_of_one_account_ignores_the_others(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    _, sql = database
    position = positions(sql, "o-1")
    sql(_q(sql, "DELETE FROM stored_events WHERE rowid = ?"), position)

    assert run(capsys, "audit", "verify", "--account", ACCOUNT)[0] == 0
    assert run(capsys, "audit", "verify", "--account", OTHER)[0] == 1


def test_events_stored_before_the_chain_are_reported_unchained(
    database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    # given events a ledger without chain keys stored (as before the chain existed)
    url, _ = database
    old = Ledger(env=persistence_env(url))
    old.save(Conversation(ig_account_id=ACCOUNT, participant_id=PARTICIPANT))
    old.close()
    services = build(settings(), announce=lambda _: None)
    register_account(services)
    services.close()

    status, out = run(capsys, "audit", "verify")

    assert status == 0, out
    assert "unchained: 1" in out
    assert "chained:   1" in out


def test_verify_fails_after_the_chain_table_is_emptied(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    _, sql = database
    sql("DELETE FROM stored_events_chain")

    status, out = run(capsys, "audit", "verify")

    assert status == 1, out
    assert "BROKEN (unlinked) at position" in out
    assert "unchained" not in out


def test_verify_fails_after_the_chain_table_is_emptied_and_an_event_edited(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    # given the intruder's way: drop every link, then edit an event at leisure
    _, sql = database
    sql("DELETE FROM stored_events_chain")
    position = positions(sql, "m-2")
    [(state,)] = sql(_q(sql, "SELECT state FROM stored_events WHERE rowid = ?"), position)
    # The text is sealed (application/content.py): the intruder edits what is in clear.
    edited = bytes(state).replace(b'"mid":"m-2"', b'"mid":"m-X"')
    assert edited != bytes(state)
    sql(_q(sql, "UPDATE stored_events SET state = ? WHERE rowid = ?"), edited, position)

    status, out = run(capsys, "audit", "verify")

    assert status == 1, out
    assert "BROKEN (unlinked)" in out


def test_verify_fails_after_the_whole_chain_and_its_genesis_are_deleted(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    _, sql = database
    sql("DELETE FROM stored_events_chain")
    sql("DELETE FROM stored_events_chain_genesis")

    status, out = run(capsys, "audit", "verify")

    assert status == 1, out
    assert "BROKEN (no-chain)" in out


def test_verify_fails_after_a_whole_conversation_is_deleted_with_its_links(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    # given the other account's conversation gone from the log, events and links alike
    _, sql = database
    gone = str(conversation_id(OTHER, PARTICIPANT))
    ids = [gone.replace("-", "")] if not _pg(sql) else [gone]
    sql(_q(sql, "DELETE FROM stored_events WHERE originator_id = ?"), *ids)
    sql(_q(sql, "DELETE FROM stored_events_chain WHERE originator_id = ?"), *ids)

    status, out = run(capsys, "audit", "verify")

    assert status == 1, out
    assert "BROKEN (deleted)" in out
    assert "the event before it in the log" in out


def checkpoint(capsys: pytest.CaptureFixture[str]) -> str:
    status = main(["audit", "checkpoint"])
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    [token] = captured.out.split()
    return token


def test_a_checkpoint_verifies_while_the_log_grows_after_it(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    # given a checkpoint taken now, and more events stored after it
    token = checkpoint(capsys)
    services = build(settings(), announce=lambda _: None)
    try:
        deliver(services, "m-4")
    finally:
        services.close()

    status, out = run(capsys, "audit", "verify", "--against", token)

    assert status == 0, out
    assert f"extends the checkpoint at position {positions(database[1], 'm-3')}" in out
    assert "checked 9 events" in out


def test_a_checkpoint_can_be_given_as_a_file(
    history: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "checkpoint.txt"
    kept.write_text(checkpoint(capsys) + "\n")

    status, out = run(capsys, "audit", "verify", "--against", str(kept))

    assert status == 0, out


def test_verify_against_a_checkpoint_fails_after_the_newest_events_are_deleted(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    # given a checkpoint, then the newest events deleted with their links
    _, sql = database
    token = checkpoint(capsys)
    newest, kept = positions(sql, "m-3"), positions(sql, "o-1")
    sql(_q(sql, "DELETE FROM stored_events_chain WHERE notification_id > ?"), kept)
    sql(_q(sql, "DELETE FROM stored_events WHERE rowid > ?"), kept)
    assert run(capsys, "audit", "verify")[0] == 0  # without the checkpoint: nothing to see

    status, out = run(capsys, "audit", "verify", "--against", token)

    assert status == 1, out
    assert f"BROKEN (truncated) at position {newest}" in out
    assert f"the log ends at position {kept}" in out


def test_verify_against_a_checkpoint_fails_when_the_chain_was_begun_again(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    # given a checkpoint, then the chain and its genesis deleted and a new event stored,
    # which begins a new chain there: the log alone would look pre-chain, then chained
    _, sql = database
    token = checkpoint(capsys)
    sql("DELETE FROM stored_events_chain")
    sql("DELETE FROM stored_events_chain_genesis")
    services = build(settings(), announce=lambda _: None)
    try:
        deliver(services, "m-4")
    finally:
        services.close()
    assert run(capsys, "audit", "verify")[0] == 0

    status, out = run(capsys, "audit", "verify", "--against", token)

    assert status == 1, out
    assert "BROKEN (not-extended)" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t[:-2] + ("00" if not t.endswith("00") else "11"), "signature does not match"),
        (lambda t: "not a checkpoint", "is not a dmledger checkpoint"),
    ],
)
def test_verify_refuses_a_forged_or_garbled_checkpoint(
    history: None,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[str], str],
    message: str,
) -> None:
    token = change(checkpoint(capsys))

    status, out = run(capsys, "audit", "verify", "--against", token)

    assert status == 2, out
    assert message in out


def test_verify_on_memory_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DMLEDGER_DATABASE_URL", "memory://")
    monkeypatch.setenv("DMLEDGER_SECRET_KEY", TEST_KEY)

    status, out = run(capsys, "audit", "verify")

    assert status == 2
    assert "keeps no hash chain" in out


# -- audit projections -------------------------------------------------------------------


def test_the_projection_check_passes_on_a_healthy_database(
    history: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run(capsys, "audit", "projections", "--account", ACCOUNT)

    assert status == 0, out
    assert "conversation_list: 1 rows compared" in out
    assert "message_history: 3 rows compared" in out
    lines = out.strip().splitlines()
    assert len(lines) >= 2
    assert all(line.endswith(": identical") for line in lines)


def test_the_projection_check_fails_after_a_view_row_is_altered(
    history: None, database: tuple[str, Sql], capsys: pytest.CaptureFixture[str]
) -> None:
    _, sql = database
    sql(
        _q(
            sql,
            "UPDATE conversation_list SET unread_count = 99, status = 'blocked' "
            "WHERE conversation_id = ?",
        ),
        str(CONVERSATION),
    )
    sql(_q(sql, "DELETE FROM message_history WHERE message_key = ?"), "m-2")

    status, out = run(capsys, "audit", "projections", "--account", ACCOUNT)

    assert status == 1
    assert "conversation_list: 1 rows compared" in out
    assert "status, unread_count differ" in out
    assert "unread_count: live 99, rebuilt 3" in out
    assert "message_history [conversation_id=" in out
    assert "m-2]: missing from the live view" in out


def test_the_projection_check_says_a_view_that_lags_is_behind_not_identical(
    history: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # given events the read models have not followed (no runner is running)
    services = build(settings(), announce=lambda _: None)
    try:
        for number in range(5):
            deliver(services, f"late-{number}")
    finally:
        services.close()

    status, out = run(capsys, "audit", "projections", "--account", ACCOUNT, "--wait", "0")

    assert status == 1, out
    assert "identical" not in out
    assert "conversation_list: behind the log by 5 events" in out


def _pg(sql: Sql) -> bool:
    return sql.__name__ == "run_postgres"


def _q(sql: Sql, statement: str) -> str:
    return statement.replace("?", "%s") if _pg(sql) else statement
