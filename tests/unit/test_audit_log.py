"""Reading an account's history for auditors, and folding a conversation as of a version."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.domain import Aggregate
from sqlalchemy import update

from application.audit import (
    REDACTED,
    SECRET_FIELDS,
    AuditLog,
    event_types,
    parse_types,
    redacted,
)
from application.errors import InvalidInput, NotFound
from application.ledger import Ledger
from domain.account import Account
from domain.conversation import Conversation
from infrastructure.clock import SystemClock
from projections.as_of import conversation_as_of
from projections.audit_check import check_account
from projections.conversation_list.view import conversations
from projections.database import create_view_engine
from projections.registry import ReadModels

ACCOUNT, OTHER = "17841400000000001", "17841400000000002"


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    ledger = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield ledger
    ledger.close()


def account(ig_account_id: str) -> Account:
    return Account(
        ig_account_id=ig_account_id,
        username="shop",
        app_secret="gAAAA-secret",
        access_token="gAAAA-token",
        verify_token="gAAAA-verify",
        by="test",
    )


@pytest.fixture
def conversation(ledger: Ledger) -> Conversation:
    """Mine: m-1, m-2, archived, m-3 (versions 1 to 5); another account's in between."""
    mine = Conversation(ig_account_id=ACCOUNT, participant_id="1")
    theirs = Conversation(ig_account_id=OTHER, participant_id="1")
    ledger.save(account(ACCOUNT), account(OTHER))
    mine.receive_message(mid="m-1", sent_at=10, text="hello")
    ledger.save(mine)
    theirs.receive_message(mid="o-1", sent_at=11, text="not yours")
    ledger.save(theirs)
    mine.receive_message(mid="m-2", sent_at=20, text="still there?")
    mine.archive(by="test")
    mine.receive_message(mid="m-3", sent_at=30, text="hello again")
    ledger.save(mine)
    return mine


def test_history_is_the_accounts_and_its_conversations_events_in_log_order(
    ledger: Ledger, conversation: Conversation
) -> None:
    events = list(AuditLog(ledger, page_size=2).events(ACCOUNT))

    assert [(e.type, e.version) for e in events] == [
        ("Account.Registered", 1),
        ("Conversation.Started", 1),
        ("Conversation.MessageReceived", 2),
        ("Conversation.MessageReceived", 3),
        ("Conversation.Archived", 4),
        ("Conversation.MessageReceived", 5),
    ]
    assert [e.position for e in events] == [1, 3, 4, 7, 8, 9]
    assert events[0].data["app_secret"] == "gAAAA-secret"
    assert "originator_id" not in events[2].data


NOT_SECRET = {
    "key": "what identifies a recorded item, e.g. message:<mid>",
    "key_id": "an API key's public id, as `keys list` shows it",
    "request_hash": "the hash of a CRM reply request's body, to spot a reused idempotency key",
}
LOOKS_SECRET = re.compile(r"secret|token|hash|password|key|credential|signature")


def stored_event_fields() -> set[tuple[str, str]]:
    """(event type, field) of every event dmledger stores."""
    import domain.account
    import domain.api_key
    import domain.conversation  # noqa: F401 - their events must be defined

    found = set()
    pending: list[type[Any]] = [Aggregate.Event]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__dict__.get("TOPIC", "").removeprefix("dmledger:") in event_types():
            for base in cls.__mro__:
                found |= {(cls.TOPIC, name) for name in inspect.get_annotations(base)}
    return found


def test_every_field_that_looks_secret_is_redacted_or_known_harmless() -> None:
    fields = stored_event_fields()
    looks_secret = {name for _, name in fields if LOOKS_SECRET.search(name)}

    assert ("dmledger:Account.CrmEndpointSet", "secret") in fields  # the walk finds them
    assert looks_secret - SECRET_FIELDS - set(NOT_SECRET) == set()
    assert looks_secret >= SECRET_FIELDS  # no stale name in the list


def test_redacting_replaces_every_secret_at_any_depth_and_keeps_the_rest() -> None:
    data = {
        "url": "https://crm.example/hooks",
        "secret": "gAAAA-crm",
        "access_token": None,
        "nested": [{"app_secret": "gAAAA-app", "key": "message:m-1"}],
    }

    assert redacted(data) == {
        "url": "https://crm.example/hooks",
        "secret": REDACTED,
        "access_token": None,
        "nested": [{"app_secret": REDACTED, "key": "message:m-1"}],
    }
    assert data["secret"] == "gAAAA-crm"  # a copy


def test_history_filters_by_position_time_and_type(
    ledger: Ledger, conversation: Conversation
) -> None:
    audit = AuditLog(ledger, page_size=2)
    everything = list(audit.events(ACCOUNT))

    assert list(audit.events(ACCOUNT, after=4)) == everything[3:]
    assert list(audit.events(ACCOUNT, until=everything[2].timestamp)) == everything[:3]
    assert [e.type for e in audit.events(ACCOUNT, types=["Conversation.Archived"])] == [
        "Conversation.Archived"
    ]


def test_ndjson_comes_in_chunks_of_whole_lines(ledger: Ledger, conversation: Conversation) -> None:
    chunks = list(AuditLog(ledger).ndjson(ACCOUNT, lines_per_chunk=4))

    assert [chunk.count(b"\n") for chunk in chunks] == [4, 2]
    assert all(chunk.endswith(b"\n") for chunk in chunks)


def test_types_are_checked_against_the_stored_event_types() -> None:
    assert "Conversation.MessageReceived" in event_types()
    assert "Conversation.Event" not in event_types()
    assert parse_types(["Conversation.Archived, Account.Registered", ""]) == [
        "Conversation.Archived",
        "Account.Registered",
    ]
    assert parse_types(None) is None
    with pytest.raises(InvalidInput, match=r"unknown event type Conversation\.Nope") as error:
        parse_types(["Conversation.Nope"])
    assert error.value.field == "types"


def test_a_conversation_as_of_each_version_is_what_the_aggregate_was(
    ledger: Ledger, conversation: Conversation
) -> None:
    audit = AuditLog(ledger)
    for version in range(1, 6):
        events = audit.conversation_events(ACCOUNT, conversation.id, version=version)
        row, messages = conversation_as_of(events)
        then: Conversation = ledger.repository.get(conversation.id, version=version)

        assert row is not None
        assert row["status"] == then.status
        assert [m["mid"] for m in messages] == [k.removeprefix("message:") for k in then.recorded]


def test_a_conversation_as_of_a_version_shows_the_participant_known_then(
    ledger: Ledger, conversation: Conversation
) -> None:
    conversation.record_participant_profile(
        profile={"username": "anna", "name": "Anna"}, looked_up_at=40
    )
    ledger.save(conversation)
    audit = AuditLog(ledger)

    before, _ = conversation_as_of(audit.conversation_events(ACCOUNT, conversation.id, version=5))
    after, _ = conversation_as_of(audit.conversation_events(ACCOUNT, conversation.id, version=6))

    assert before is not None
    assert before.get("participant_name") is None
    assert after is not None
    assert (after["participant_username"], after["participant_name"]) == ("anna", "Anna")


def test_a_conversation_at_a_time_has_the_events_recorded_by_then(
    ledger: Ledger, conversation: Conversation
) -> None:
    audit = AuditLog(ledger)
    started = audit.conversation_events(ACCOUNT, conversation.id, version=1)[0]

    events = audit.conversation_events(ACCOUNT, conversation.id, at=started.timestamp)

    assert [e.originator_version for e in events] == [1]


@pytest.mark.parametrize(
    ("ig_account_id", "version", "error"),
    [
        (OTHER, None, NotFound),  # (None: the latest, as when not given)
        (ACCOUNT, 6, InvalidInput),
        (ACCOUNT, 0, InvalidInput),
    ],
)
def test_a_conversation_of_another_account_or_version_is_refused(
    ledger: Ledger,
    conversation: Conversation,
    ig_account_id: str,
    version: int | None,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        AuditLog(ledger).conversation_events(ig_account_id, conversation.id, version=version)


def test_the_projection_check_compares_each_row_and_names_the_differing_columns(
    ledger: Ledger, conversation: Conversation, tmp_path: Path
) -> None:
    # given live read models caught up with the log
    engine = create_view_engine(f"sqlite:///{tmp_path}/views.sqlite3")
    from application.auto_reply import AutoReplies
    from application.ledger_writer import LedgerWriter
    from infrastructure.secret_box import FernetSecretBox

    box = FernetSecretBox([FernetSecretBox.new_key()])
    clock = SystemClock()
    read_models = ReadModels.build(
        ledger, engine, LedgerWriter(ledger), AutoReplies(ledger, box, None, clock), clock=clock
    )
    read_models.catch_up()
    audit = AuditLog(ledger)

    healthy = check_account(read_models, audit, ACCOUNT)

    # when a row is changed behind the projection's back
    with engine.begin() as conn:
        conn.execute(update(conversations).values(unread_count=7))
    altered = check_account(read_models, audit, ACCOUNT)

    assert [(c.projection, c.rows, c.identical) for c in healthy][:2] == [
        ("conversation_list", 1, True),
        ("message_history", 3, True),
    ]
    assert all(c.identical for c in healthy)
    [difference] = altered[0].differences
    assert difference.kind == "different"
    assert difference.columns == ["unread_count"]
    assert (difference.live or {})["unread_count"] == 7
    assert (difference.rebuilt or {})["unread_count"] == 3
    assert altered[1].identical  # the other account's conversation was not compared
    engine.dispose()
