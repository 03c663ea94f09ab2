"""The content envelope: a message's content sealed under its own data key, wrapped by the
secret keys; opened, shredded (its key gone), refused under a wrong key, kept across a
rotation of the secret keys. And the vault over it: what the log stores, and what readers get."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from application.content import ContentMapper, ContentVault, KeyedStoredEvent
from application.ledger import Ledger
from application.ports import UnreadableContent
from domain.content import CONTENT_FIELDS, erased_fields
from domain.conversation import Conversation
from infrastructure.content_envelope import AesGcmEnvelope
from infrastructure.persistence import persistence_env
from infrastructure.secret_box import FernetSecretBox

OLD_KEY = FernetSecretBox.new_key()
NEW_KEY = FernetSecretBox.new_key()


def test_sealed_content_opens_with_its_data_key() -> None:
    envelope = AesGcmEnvelope([OLD_KEY])
    key, wrapped = envelope.new_key()

    sealed = envelope.seal(key, b"hello there", b"conversation:2:key")

    assert b"hello there" not in sealed
    assert envelope.open(wrapped, sealed, b"conversation:2:key") == b"hello there"


def test_each_data_key_is_its_own() -> None:
    envelope = AesGcmEnvelope([OLD_KEY])
    key, _ = envelope.new_key()
    _, other_wrapped = envelope.new_key()
    sealed = envelope.seal(key, b"hello", b"ctx")

    with pytest.raises(UnreadableContent):
        envelope.open(other_wrapped, sealed, b"ctx")


def test_sealed_content_moved_to_another_event_does_not_open() -> None:
    envelope = AesGcmEnvelope([OLD_KEY])
    key, wrapped = envelope.new_key()
    sealed = envelope.seal(key, b"hello", b"conversation:2:key")

    with pytest.raises(UnreadableContent):
        envelope.open(wrapped, sealed, b"conversation:3:key")


def test_a_data_key_wrapped_under_another_secret_key_does_not_open() -> None:
    key, wrapped = AesGcmEnvelope([OLD_KEY]).new_key()
    sealed = AesGcmEnvelope([OLD_KEY]).seal(key, b"hello", b"ctx")

    with pytest.raises(UnreadableContent):
        AesGcmEnvelope([NEW_KEY]).open(wrapped, sealed, b"ctx")


def test_a_rotated_secret_key_still_opens_and_rewraps_under_the_newest() -> None:
    # given content sealed while OLD_KEY was the only secret key
    before = AesGcmEnvelope([OLD_KEY])
    key, wrapped = before.new_key()
    sealed = before.seal(key, b"hello", b"ctx")

    # when NEW_KEY is put first, and the data key re-wrapped
    rotated = AesGcmEnvelope([NEW_KEY, OLD_KEY])
    rewrapped = rotated.rewrap(wrapped)

    # then both open now, and once OLD_KEY is removed only the re-wrapped one does
    assert rotated.open(wrapped, sealed, b"ctx") == b"hello"
    assert AesGcmEnvelope([NEW_KEY]).open(rewrapped, sealed, b"ctx") == b"hello"
    with pytest.raises(UnreadableContent):
        AesGcmEnvelope([NEW_KEY]).open(wrapped, sealed, b"ctx")


class KeyTable:
    """The key table, as a dict (the recorders keep it in SQL)."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.queries = 0

    def wrapped_keys(self, key_ids: Sequence[str]) -> dict[str, str]:
        self.queries += 1
        return {k: self.keys[k] for k in key_ids if k in self.keys}

    def key_counts(
        self, conversation_ids: Sequence[str], before_ms: int | None = None
    ) -> dict[str, int]:
        return {}

    def rewrap_keys(self, rewrap: Callable[[str], str]) -> int:
        self.keys = {k: rewrap(v) for k, v in self.keys.items()}
        return len(self.keys)


def ledger_mapper() -> ContentMapper:
    """The mapper of a ledger in memory, with its transcodings."""
    mapper = Ledger(env=persistence_env("memory://")).mapper
    assert isinstance(mapper, ContentMapper)
    return mapper


def mapper_with_vault() -> tuple[ContentMapper, KeyTable]:
    mapper = ledger_mapper()
    table = KeyTable()
    mapper.vault = ContentVault(AesGcmEnvelope([OLD_KEY]), table)
    return mapper, table


def message(event: object) -> Conversation.MessageReceived:
    """The event, which must be a received message."""
    assert isinstance(event, Conversation.MessageReceived)
    return event


def received(conversation: Conversation, mid: str, text: str) -> Conversation.MessageReceived:
    conversation.receive_message(
        mid=mid,
        sent_at=1_700_000_000_000,
        text=text,
        attachments=[{"type": "image", "payload": {"url": f"https://cdn/{text}"}}],
    )
    return message(conversation.collect_events()[-1])


def store(
    mapper: ContentMapper, table: KeyTable, event: Conversation.MessageReceived
) -> KeyedStoredEvent:
    stored = mapper.to_stored_event(event)
    assert isinstance(stored, KeyedStoredEvent)
    for new in stored.new_keys:
        table.keys[new.key_id] = new.wrapped
    return stored


@dataclass
class Sealing:
    """A ledger's mapper with a vault over a key table, and a conversation whose messages
    it seals."""

    mapper: ContentMapper
    table: KeyTable
    conversation: Conversation

    def store(self, mid: str, text: str) -> KeyedStoredEvent:
        """The conversation's new message, as the log stores it (its key in the table)."""
        return store(self.mapper, self.table, received(self.conversation, mid, text))

    def read(self, stored: StoredEvent) -> Conversation.MessageReceived:
        """The message read back from the log, not opened yet."""
        return message(self.mapper.to_domain_event(stored))


@pytest.fixture
def sealing() -> Sealing:
    mapper, table = mapper_with_vault()
    return Sealing(mapper, table, Conversation(ig_account_id="1", participant_id="2"))


def test_the_log_holds_ciphertext_and_readers_get_the_content_back(sealing: Sealing) -> None:
    stored = sealing.store("m-1", "hello there")

    event = sealing.read(stored)
    assert b"hello there" not in stored.state
    assert b"https://cdn" not in stored.state
    assert b'"mid":"m-1"' in stored.state  # Meta's ids stay in clear
    assert event.text is None  # sealed until opened: what an aggregate replays

    sealing.mapper.open([event])

    assert event.text == "hello there"
    assert event.attachments == [{"type": "image", "payload": {"url": "https://cdn/hello there"}}]
    assert "content" not in vars(event)


def test_a_shredded_key_reads_as_erased_and_a_batch_costs_one_key_query(
    sealing: Sealing,
) -> None:
    first = sealing.store("m-1", "first")
    second = sealing.store("m-2", "second")
    del sealing.table.keys[first.new_keys[0].key_id]  # shredded

    events = [sealing.read(first), sealing.read(second)]
    sealing.mapper.open(events)

    assert sealing.table.queries == 1
    assert events[0].text is None
    assert events[0].attachments == []
    assert vars(events[0])["content"] == {"erased": True}  # put back by the mapper
    assert events[1].text == "second"


def test_an_unsend_carries_the_keys_it_destroys(sealing: Sealing) -> None:
    conversation = sealing.conversation
    sealing.store("m-1", "first")
    conversation.unsend(mid="m-1", unsent_at=1_700_000_000_500)

    stored = sealing.mapper.to_stored_event(conversation.collect_events()[-1])

    assert isinstance(stored, KeyedStoredEvent)
    assert [(s.conversation_ids, s.mid) for s in stored.shreds] == [
        ((str(conversation.id),), "m-1")
    ]


def test_events_stored_in_clear_before_the_vault_are_read_as_before() -> None:
    clear = ledger_mapper()  # no vault: as before this change
    conversation = Conversation(ig_account_id="1", participant_id="2")
    stored = clear.to_stored_event(received(conversation, "m-1", "old text"))
    mapper, _ = mapper_with_vault()

    event = message(mapper.to_domain_event(stored))
    mapper.open([event])

    assert b"old text" in stored.state
    assert event.text == "old text"
    assert "content" not in vars(event)


def test_a_message_arriving_after_its_unsend_keeps_no_content() -> None:
    conversation = Conversation(ig_account_id="1", participant_id="2")
    conversation.unsend(mid="m-1", unsent_at=1_700_000_000_500)

    event = received(conversation, "m-1", "too late")

    assert event.text is None
    assert event.attachments == []


def test_timestamps_are_kept_in_ms_for_retention(sealing: Sealing) -> None:
    event = received(sealing.conversation, "m-1", "hello")

    stored = store(sealing.mapper, sealing.table, event)

    recorded = datetime.fromtimestamp(stored.new_keys[0].recorded_at / 1000, UTC)
    assert abs((recorded - event.timestamp).total_seconds()) < 0.001
    assert stored.new_keys[0].mid == "m-1"
    assert uuid4().hex != stored.new_keys[0].key_id


def sealed_and_read_by_a_runner(sealing: Sealing) -> KeyedStoredEvent:
    """A message this process sealed, which a projection runner's batch then opened with
    the key it kept: no query of the key table."""
    first = sealing.store("m-1", "first")
    event = sealing.read(first)
    sealing.mapper.open([event], recent=True)
    assert (event.text, sealing.table.queries) == ("first", 0)
    return first


def test_a_runner_opens_what_this_process_sealed_lately_without_asking_the_key_table(
    sealing: Sealing,
) -> None:
    mapper, table, conversation = sealing.mapper, sealing.table, sealing.conversation
    # a projection runner's batch: the key this process just sealed, no query
    first = sealed_and_read_by_a_runner(sealing)

    # a reader whose content leaves (the API, the stream) always asks the key table
    again = sealing.read(first)
    del table.keys[first.new_keys[0].key_id]  # destroyed by another process, say
    mapper.open([again])
    assert (again.text, table.queries) == (None, 1)

    # once this process stores a destroying event, its kept keys are forgotten
    second = sealing.store("m-2", "second")
    conversation.unsend(mid="m-2", unsent_at=1_700_000_000_500)
    mapper.to_stored_event(conversation.collect_events()[-1])
    del table.keys[second.new_keys[0].key_id]  # the recorder deletes it in the same insert
    late = sealing.read(second)
    mapper.open([late], recent=True)
    assert (late.text, table.queries) == (None, 2)


def test_erased_values_are_empty_and_fresh_each_time() -> None:
    # (a shallow copy of each is then a fresh one: see `domain.content.erased_fields`)
    for topic, fields in CONTENT_FIELDS.items():
        assert all(v is None or v == [] or v == {} for v in fields.values()), topic
        first, second = erased_fields(topic), erased_fields(topic)
        for name, value in first.items():
            if value is not None:
                assert value is not second[name]
                assert value is not fields[name]


def test_a_key_sealed_lately_is_kept_until_the_runners_first_open_it(sealing: Sealing) -> None:
    # The shared reading opens each event once and keeps it decoded for every runner
    # (projections/shared_reading.py): the key is then no longer needed in memory (P6).
    first = sealed_and_read_by_a_runner(sealing)

    # a runner reading it again (behind the shared window) asks the key table, once a batch
    again = sealing.read(first)
    sealing.mapper.open([again], recent=True)

    assert (again.text, sealing.table.queries) == ("first", 1)
