"""The msgspec transcoder reads and writes eventsourcing's JSON format, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)

from application.ingest import sign
from infrastructure.msgspec_transcoder import MsgspecTranscoder
from infrastructure.persistence import persistence_env
from interfaces.composition import Services
from tests.conftest import APP_SECRET, FIXTURES, meta_body, register_account


def registered(transcoder: JSONTranscoder) -> JSONTranscoder:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


@pytest.fixture
def old() -> JSONTranscoder:
    return registered(JSONTranscoder())


@pytest.fixture
def new() -> JSONTranscoder:
    return registered(MsgspecTranscoder())


class Colour(StrEnum):
    RED = "red"


AWKWARD: list[Any] = [
    {},
    [],
    {"text": '\x00\x1f\x7f\u2028 "quoted" \\ / é 😀 \n\t\r\b\f', "n": 2**70, "m": -(2**64)},
    {"at": datetime(2026, 11, 23, 17, 0, 1, 123456, tzinfo=UTC), "id": uuid4()},
    {
        "nested": [
            {"id": uuid4(), "when": [datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=2)))]}
        ]
    },
    {"price": Decimal("10.50"), "tuple": (1, "two", None, True, False)},
    {"_type_": "not a marker", "other": 1},
    {"_type_": "uuid_hex", "_data_": "0" * 32, "third": 1},
    {"float": 0.1, "big": 1e16, "small": 5e-324},  # left to the standard library
    {"enum": Colour.RED, "str_subclass": Colour.RED},
    {1: "integer key"},
]


@pytest.mark.parametrize("value", AWKWARD, ids=range(len(AWKWARD)))
def test_encodes_the_same_bytes_and_each_decodes_the_others(
    old: JSONTranscoder, new: JSONTranscoder, value: Any
) -> None:
    encoded = new.encode(value)

    assert encoded == old.encode(value)
    assert new.decode(encoded) == old.decode(encoded)


def test_decodes_what_msgspec_refuses_as_the_standard_library_does(
    old: JSONTranscoder, new: JSONTranscoder
) -> None:
    for data in (b'{"x":NaN}', b'{"x":1e400}', b'{"x":"\\ud800"}'):
        assert repr(new.decode(data)) == repr(old.decode(data))


def test_refuses_what_the_standard_library_refuses(new: JSONTranscoder) -> None:
    with pytest.raises(TranscodingNotRegisteredError):
        new.encode({"a set": {1, 2}})
    with pytest.raises(TranscodingNotRegisteredError):
        new.decode(b'{"_type_":"unknown","_data_":1}')


def test_every_event_dmledger_stores_is_stored_as_the_standard_library_would(
    make_services: Any, old: JSONTranscoder, tmp_path: Path
) -> None:
    # given a ledger on the configured transcoder, fed every kind of Meta webhook
    services: Services = make_services(f"sqlite:///{tmp_path}/ledger.sqlite3")
    assert isinstance(services.ledger.mapper.transcoder, MsgspecTranscoder)
    assert persistence_env("memory://")["TRANSCODER_TOPIC"].endswith(":MsgspecTranscoder")
    register_account(services)
    for path in sorted(FIXTURES.glob("*.json")):
        body = meta_body(path.stem)
        services.writer.run_now(services.ingest.command(body, sign(body, APP_SECRET)))
    stored = services.ledger.recorder.select_notifications(start=1, limit=10_000)
    assert len({n.topic for n in stored}) > 10

    for notification in stored:
        # then the standard library's transcoder reads each one, and writes the same bytes
        state = old.decode(notification.state)
        assert old.encode(state) == notification.state
        # and both transcoders read the same state back
        assert services.ledger.mapper.transcoder.decode(notification.state) == state


def test_a_log_written_with_the_standard_library_reads_as_the_same_events(
    tmp_path: Path,
) -> None:
    from application.ledger import Ledger
    from domain.conversation import Conversation

    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    env = {k: v for k, v in persistence_env(url).items() if k != "TRANSCODER_TOPIC"}

    # given a conversation stored by a ledger on eventsourcing's own JSONTranscoder
    before = Ledger(env=env)
    assert type(before.mapper.transcoder) is JSONTranscoder
    conversation = Conversation(ig_account_id="17841400000000001", participant_id="5500001")
    conversation.receive_message(mid="m1", sent_at=1, text='é 😀 "hi"')
    conversation.record_echo(mid="e1", sent_at=2, text="hello")
    conversation.mark_read(by="crm")
    before.save(conversation)
    stored = before.recorder.select_notifications(start=1, limit=1000)
    assert len(stored) == 4

    # then a ledger on the msgspec transcoder reads every one as the same event
    after = Ledger(env=persistence_env(url))
    assert isinstance(after.mapper.transcoder, MsgspecTranscoder)
    for notification in stored:
        assert vars(after.mapper.to_domain_event(notification)) == vars(
            before.mapper.to_domain_event(notification)
        )
    assert after.find(conversation.id) == before.find(conversation.id)
    before.close()
    after.close()
