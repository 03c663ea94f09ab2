"""A message's time goes into the store's index of keys only if it fits the index (signed
64 bits): a poison event of an old release or a bug (a time past 64 bits) is still stored,
its key still refuses a redelivery, and `db upgrade` fills the index from a log holding one."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from domain.conversation import Conversation, recorded_key

MIGRATION = Path(__file__).parents[2] / "infrastructure/migrations/versions/0006_item_keys.py"


@pytest.mark.parametrize(
    ("sent_at", "indexed"),
    [
        (1_767_225_600_000, 1_767_225_600_000),
        (2**63 - 1, 2**63 - 1),
        (2**63, None),
        (-(2**64), None),
    ],
)
def test_a_message_key_keeps_its_time_only_if_the_index_can_hold_it(
    sent_at: int, indexed: int | None
) -> None:
    conversation = Conversation(ig_account_id="17841400000000001", participant_id="9001")
    conversation.receive_message(mid="m-1", sent_at=sent_at, text="hi")
    event = conversation.collect_events()[-1]
    assert isinstance(event, Conversation.MessageReceived)

    assert recorded_key(event) == (event.key, indexed)


def test_the_upgrade_indexes_a_poison_events_key_without_its_time() -> None:
    spec = importlib.util.spec_from_file_location("item_keys_migration", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    topic = next(iter(migration._TIMED))
    stored = SimpleNamespace(
        originator_id=uuid.uuid4(),
        topic=topic,
        state=json.dumps({"key": "m:poison", "sent_at": 2**63}).encode(),
    )

    row = migration._row(stored, postgres=True)

    assert row is not None
    assert row["value"] is None
