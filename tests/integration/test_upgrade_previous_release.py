"""`dmledger db upgrade` on a database the release before migrations made, on SQLite and
PostgreSQL: every row stays, the hash chain still verifies, and processes start again.

The databases are dumps that release's code made (`tests/fixtures/previous_release/`).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from application.ledger_writer import Changes
from domain.account_values import AccountSettings, RuleSpec, RuleTrigger
from domain.conversation import Conversation
from domain.identity import conversation_id
from domain.recorded_keys import RECENT_KEYS
from infrastructure.settings import Settings
from interfaces.cli import main
from interfaces.composition import build
from projections.conversation_list.view import ConversationListView

FIXTURE = Path(__file__).parents[1] / "fixtures" / "previous_release"
SECRET_KEY = (FIXTURE / "secret.key").read_text().strip()
ACCOUNT = "17841400000000001"
PARTICIPANT = "5500000000000001"
"""The participant of the dump's conversation."""
TABLES = [
    "api_key_usage",
    "conversation_list",
    "delivery_cursors",
    "delivery_queue",
    "delivery_state",
    "message_history",
    "outbox",
    "outbox_conversations",
    "outbox_crm_subscriptions",
    "projection_failures",
    "projection_tracking",
]
"""Every table of that release but the event store's, which differ by name per backend."""

CHANGED_READ_MODELS = "conversation_list message_history outbox"
"""The read models whose definition changed since that release (`projections.definitions`),
as `dmledger projections rebuild` takes them."""

Rows = Callable[[str], list[tuple[Any, ...]]]


class Previous:
    """A database loaded from the dump, its URL, a reader of a table's rows, and a way to
    run SQL on it."""

    def __init__(
        self,
        url: str,
        rows: Rows,
        event_tables: tuple[str, str, str],
        sql: Callable[[str], list[tuple[Any, ...]]],
    ) -> None:
        self.url = url
        self.rows = rows
        self.event_tables = event_tables
        self.sql = sql

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return {name: self.rows(name) for name in [*TABLES, *self.event_tables]}


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def previous(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Previous]:
    """The previous release's database, in the CLI's environment."""
    if request.param == "sqlite":
        path = tmp_path / "previous.sqlite3"
        with sqlite3.connect(path) as conn:
            conn.executescript((FIXTURE / "sqlite.sql").read_text())

        def sqlite_rows(table: str) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as conn:
                columns = _columns_sqlite(conn, table)
                query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(columns)}"  # noqa: S608
                return conn.execute(query).fetchall()

        def sqlite_sql(statement: str) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as conn:
                return conn.execute(statement).fetchall()

        url = f"sqlite:///{path}"
        events = ("stored_events", "stored_events_chain", "stored_events_chain_genesis")
        found = Previous(url, sqlite_rows, events, sqlite_sql)
        _environment(monkeypatch, url, tmp_path)
        yield found
        return
    server: str = request.getfixturevalue("postgres_server")
    base = server.split("?")[0]
    schema = "prev_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        admin.execute(f'SET search_path TO "{schema}"')
        admin.execute((FIXTURE / "postgres.sql").read_text().encode())

    def postgres_rows(table: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                    [schema, table],
                )
            ]
            # Only the columns of the previous release: a migration may add some.
            old = [c for c in columns if c != "definition_version"]
            # json has no equality operator: order and compare as text.
            texts = ", ".join(f'"{c}"::text' for c in old)
            query = f'SELECT {texts} FROM "{table}" ORDER BY {texts}'  # noqa: S608
            return conn.execute(query).fetchall()

    def postgres_sql(statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            cursor = conn.execute(statement.encode())
            return cursor.fetchall() if cursor.description else []

    url = f"{base}?schema={schema}"
    events = ("dmledger_events", "dmledger_events_chain", "dmledger_events_chain_genesis")
    _environment(monkeypatch, url, tmp_path)
    try:
        yield Previous(url, postgres_rows, events, postgres_sql)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _columns_sqlite(conn: sqlite3.Connection, table: str) -> list[str]:
    names = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    return [f'"{n}"' for n in names if n != "definition_version"]


def _environment(monkeypatch: pytest.MonkeyPatch, url: str, tmp_path: Path) -> None:
    monkeypatch.setenv("DMLEDGER_DATABASE_URL", url)
    monkeypatch.setenv("DMLEDGER_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("DMLEDGER_DATA_DIR", str(tmp_path / "var"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_db_upgrade_keeps_every_row_and_the_chain_verifies(
    previous: Previous, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the previous release's database, with rows in every table (nothing is parked,
    # and every delivery was finished, so it left the queue)
    before = previous.snapshot()
    empty = {"projection_failures", "delivery_queue"}
    assert all(before[name] for name in before if name not in empty), before

    # when it is upgraded
    status, out, err = run(capsys, "db", "upgrade")

    # then nothing was lost, the chain verifies, and the schema is this release's
    assert status == 0, err
    assert "upgraded the schema from no revision to" in out
    assert previous.snapshot() == before
    status, out, err = run(capsys, "audit", "verify")
    assert status == 0, out + err
    assert "chained:   14" in out
    assert "intact" in out
    assert run(capsys, "db", "check")[0] == 0
    # and the read models this release defines anew are named for a rebuild (built by
    # version 1 of each), and need none once rebuilt
    status, out, err = run(capsys, "projections", "status")
    assert status == 0, err
    assert f"`dmledger projections rebuild {CHANGED_READ_MODELS}`" in out
    assert run(capsys, "projections", "rebuild", *CHANGED_READ_MODELS.split())[0] == 0
    status, out, err = run(capsys, "projections", "status")
    assert "rebuild" not in out + err
    # and the data reads as before (what was delivered stays delivered)
    status, out, err = run(capsys, "deliveries", "list", "--account", ACCOUNT)
    assert status == 0, err
    assert "delivered" in out


def test_db_upgrade_twice_changes_nothing_the_second_time(
    previous: Previous, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    after_first = previous.snapshot()

    status, out, _ = run(capsys, "db", "upgrade")

    assert status == 0
    assert "already" in out
    assert previous.snapshot() == after_first


@pytest.mark.postgres
@pytest.mark.parametrize("previous", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    "command", [["serve", "--port", "9"], ["project"], ["dispatch", "--once"]], ids=" ".join
)
def test_a_process_refuses_a_postgres_schema_that_is_behind_naming_db_upgrade(
    previous: Previous, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    status, _, err = run(capsys, *command)

    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "`dmledger db upgrade`" in lines[0]
    assert "not yet migrated" in lines[0]
    assert run(capsys, "db", "check")[0] == 1


@pytest.mark.sqlite
@pytest.mark.parametrize("previous", ["sqlite"], indirect=True)
def test_sqlite_upgrades_itself_on_start(
    previous: Previous, capsys: pytest.CaptureFixture[str]
) -> None:
    before = previous.snapshot()

    status, out, err = run(capsys, "keys", "list")

    assert status == 0, err
    assert "ops" in out
    assert run(capsys, "db", "check")[0] == 0
    assert previous.snapshot() == before


def _older_conversation_list(previous: Previous) -> int:
    """Make the conversation list as an older definition would have left it: without a
    column this release's has, its rows built by version 0; how many rows it holds."""
    previous.sql("ALTER TABLE conversation_list DROP COLUMN participant_username")
    previous.sql(
        "UPDATE projection_tracking SET definition_version = 0 "
        "WHERE projection = 'conversation_list'"
    )
    return len(previous.sql("SELECT conversation_id FROM conversation_list"))


def _conversation_list_is_current(previous: Previous, rows: int) -> None:
    found = previous.sql("SELECT conversation_id, participant_username FROM conversation_list")
    assert len(found) == rows
    assert previous.sql(
        "SELECT definition_version FROM projection_tracking WHERE projection = 'conversation_list'"
    ) == [(ConversationListView.version,)]


@pytest.mark.postgres
@pytest.mark.parametrize("previous", ["postgres"], indirect=True)
def test_a_read_model_of_another_definition_is_refused_on_postgres_until_rebuilt(
    previous: Previous, capsys: pytest.CaptureFixture[str]
) -> None:
    # given an upgraded database whose conversation list an older definition built
    assert run(capsys, "db", "upgrade")[0] == 0
    rows = _older_conversation_list(previous)

    # when a process starts, it refuses, naming the rebuild
    status, _, err = run(capsys, "dispatch", "--once")
    assert status == 2
    said = [line for line in err.splitlines() if not line.startswith("dmledger: database ")]
    assert len(said) == 1, err
    assert f"`dmledger projections rebuild {CHANGED_READ_MODELS}`" in said[0]
    status, out, _ = run(capsys, "projections", "status")
    assert f"`dmledger projections rebuild {CHANGED_READ_MODELS}`" in out

    # then after the rebuild the table has this release's columns and every row
    assert run(capsys, "projections", "rebuild", *CHANGED_READ_MODELS.split())[0] == 0
    _conversation_list_is_current(previous, rows)
    assert run(capsys, "dispatch", "--once")[0] == 0


@pytest.mark.sqlite
@pytest.mark.parametrize("previous", ["sqlite"], indirect=True)
def test_a_read_model_of_another_definition_is_rebuilt_on_start_on_sqlite(
    previous: Previous, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    rows = _older_conversation_list(previous)

    status, _, err = run(capsys, "dispatch", "--once")

    assert status == 0, err
    assert "rebuilding conversation_list" in err
    _conversation_list_is_current(previous, rows)


@pytest.mark.postgres
@pytest.mark.parametrize("previous", ["postgres"], indirect=True)
def test_a_schema_a_newer_release_upgraded_is_refused(
    previous: Previous, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    previous.sql("UPDATE dmledger_schema_version SET version_num = '9999'")

    status, _, err = run(capsys, "dispatch", "--once")

    assert status == 2
    assert "revision 9999, which this release does not know" in err


def test_the_previous_releases_rule_and_crm_endpoint_load_as_the_accounts_typed_values(
    previous: Previous, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stored as JSON objects before they had types: read back the same, and shown the same."""
    assert run(capsys, "db", "upgrade")[0] == 0
    services = build(Settings.from_environ(os.environ), announce=lambda _: None)
    try:
        account = services.ledger.account(ACCOUNT)
        assert account is not None
        [(rule_id, rule)] = account.rules.items()
        assert rule.spec == RuleSpec(
            name="shipping",
            triggers=(RuleTrigger("keyword", "ship"),),
            reply="Hi {first_name}! We ship worldwide.",
        )
        assert (rule.version, rule.order) == (1, 0)
        assert msgspec.to_builtins(services.rules.get(ACCOUNT, rule_id)) == {
            "id": rule_id,
            "name": "shipping",
            "triggers": [{"type": "keyword", "value": "ship", "media_id": None}],
            "reply": "Hi {first_name}! We ship worldwide.",
            "priority": 0,
            "conditions": {"business_hours": None, "once_per_hours": None},
            "enabled": True,
            "version": 1,
            "public_reply": None,
            # (the REST shape gained the rich reply's fields: a plain rule has neither)
            "quick_replies": None,
            "template": None,
        }
        assert account.settings == AccountSettings()
        endpoint = account.crm_endpoint
        assert endpoint is not None
        assert endpoint.enabled
        assert "message.received" in endpoint.event_types
        assert services.crm_endpoints.get(ACCOUNT).url == endpoint.url
    finally:
        services.close()


def test_db_upgrade_indexes_the_keys_of_the_previous_releases_log(
    previous: Previous, capsys: pytest.CaptureFixture[str]
) -> None:
    """A conversation keeps only its recent keys and asks the store about older ones: the
    keys of a log stored before the index existed are indexed by the upgrade, so what that
    release stored is still refused when Meta delivers it again."""
    # given the previous release's conversation, whose log knew no index of keys
    conversation = conversation_id(ACCOUNT, PARTICIPANT)

    # when it is upgraded
    assert run(capsys, "db", "upgrade")[0] == 0

    # then the store knows each key its events recorded, with a message's time
    services = build(Settings.from_environ(os.environ), announce=lambda _: None)
    try:
        received = {
            e.key: e.sent_at
            for e in services.ledger.events.get(conversation)
            if isinstance(e, Conversation.MessageReceived)
        }
        assert sorted(received) == ["message:mid-1", "message:mid-2", "message:mid-3"]
        found = services.ledger.recorded_keys({conversation: [*received, "message:mid-4"]})
        assert found == {conversation: received}
        # and a redelivery is refused by a conversation past its recent keys
        for n in range(RECENT_KEYS):
            services.writer.run_now(_receive(f"later-{n}"))
    finally:
        services.close()
    again = build(Settings.from_environ(os.environ), announce=lambda _: None)
    try:
        assert again.writer.run_now(_receive("mid-1")) is False
        assert again.writer.run_now(_receive("mid-4")) is True
    finally:
        again.close()


def _receive(mid: str) -> Callable[[Changes], bool]:
    def command(changes: Changes) -> bool:
        found = changes.get(conversation_id(ACCOUNT, PARTICIPANT), Conversation)
        assert found is not None
        return found.receive_message(mid=mid, sent_at=1, text="again")

    return command
