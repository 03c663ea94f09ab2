"""What a web worker keeps in memory stays bounded however many conversations it sees (P6),
and what it forgot is read back right."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from application import participant_profiles
from application.changes import Changes
from application.ledger import Ledger
from application.participant_profiles import ProfileLookups
from domain.account import Account
from domain.conversation import Conversation
from infrastructure import chained_recorders
from infrastructure.chained_recorders import chain_verifier, install_chain
from infrastructure.persistence import persistence_env
from infrastructure.secret_box import FernetSecretBox
from infrastructure.settings import Settings
from interfaces.composition import build
from interfaces.http.app import create_app
from projections.projection import ID_TEXTS_KEPT, id_text
from projections.shared_reading import SharedReading

ACCOUNT = "17841400000000001"
NOW = 1_800_000_000_000


def test_id_text_remembers_at_most_its_bound_and_still_answers_past_it() -> None:
    id_text.cache_clear()
    ids = [uuid4() for _ in range(ID_TEXTS_KEPT + 10)]

    assert [id_text(i) for i in ids] == [str(i) for i in ids]
    assert id_text(ids[0]) == str(ids[0])  # forgotten, made again
    assert id_text.cache_info().currsize == ID_TEXTS_KEPT


@pytest.mark.postgres
def test_the_recorder_remembers_a_bounded_number_of_last_links_and_reads_back_the_rest(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chained_recorders, "LAST_LINKS_KEPT", 2)
    ledger = Ledger(env=persistence_env(postgres_url))
    assert install_chain(ledger.recorder, [FernetSecretBox.new_key()])
    try:
        # given three conversations written by this process, one more than it remembers
        conversations = [
            Conversation(ig_account_id=ACCOUNT, participant_id=f"{n}") for n in (1, 2, 3)
        ]
        for conversation in conversations:
            conversation.receive_message(mid=f"m-{conversation.participant_id}", sent_at=NOW)
            ledger.save(conversation)
        remembered = ledger.recorder._last_links  # type: ignore[attr-defined]
        assert len(remembered) == 2
        # when each is extended, the first from its link read back from the store
        for conversation in conversations:
            conversation.receive_message(mid=f"n-{conversation.participant_id}", sent_at=NOW)
            ledger.save(conversation)

        # then it still remembers two, and every event is linked to the one before it
        assert len(remembered) == 2
        verifier = chain_verifier(ledger.recorder)
        assert verifier is not None
        report = verifier.verify()
        assert report.intact
        assert report.chained == 9
    finally:
        ledger.close()


class _Secrets:
    def encrypt(self, plaintext: str) -> str:
        return plaintext

    def decrypt(self, ciphertext: str) -> str:
        return ciphertext


class _Profiles:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def lookup(self, access_token: str, participant_id: str) -> dict[str, Any]:
        self.asked.append(participant_id)
        return {"username": f"u{participant_id}"}


class _Message:
    def __init__(self, conversation: Conversation) -> None:
        self.originator_id = conversation.id


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    ledger = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield ledger
    ledger.close()


def test_profile_lookups_remember_a_bounded_number_of_conversations_and_read_back_the_rest(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(participant_profiles, "CONVERSATIONS_KEPT", 2)
    account = Account(
        ig_account_id=ACCOUNT,
        username="shop",
        app_secret="s",
        access_token="t",
        verify_token="v",
        by="test",
    )
    conversations = [Conversation(ig_account_id=ACCOUNT, participant_id=f"{n}") for n in (1, 2, 3)]
    for conversation in conversations:
        conversation.receive_message(mid=f"m-{conversation.participant_id}", sent_at=NOW)
    ledger.save(account, *conversations)
    profiles = _Profiles()
    asking = ProfileLookups(ledger, _Secrets(), profiles, lambda: NOW)

    # given each conversation's profile looked up and recorded, one more than it remembers
    for conversation in conversations:
        answer = asking.answer_for(_Message(conversation), {}, {})
        assert answer is not None
        assert answer.record_on(conversation)
        ledger.save(conversation)
    assert len(asking._known) == 2

    # then the forgotten first one is read back: looked up already, not asked again
    assert asking.answer_for(_Message(conversations[0]), {}, {}) is None
    assert profiles.asked == ["1", "2", "3"]
    assert len(asking._known) == 2


def store_messages(ledger: Ledger, count: int, participant: str) -> None:
    conversation = Conversation(ig_account_id=ACCOUNT, participant_id=participant)
    for n in range(count):
        conversation.receive_message(mid=f"{participant}-{n}", sent_at=n, text=f"hi {n}")
    ledger.save(conversation)


def test_the_shared_window_lets_go_of_what_every_follower_has_passed() -> None:
    ledger = Ledger(env=persistence_env("memory://"))
    store_messages(ledger, 9, "1")  # notifications 1..10
    reading = SharedReading(ledger)
    fast, slow = object(), object()
    reading.read(1, 100, reader=fast)
    reading.read(1, 100, reader=slow)
    store_messages(ledger, 3, "2")  # 11..14

    # when one follower moves on, the window keeps what the other has not read yet
    ahead = reading.read(11, 100, reader=fast)
    assert len(reading._events) == 14
    # and when both have, only what they read last
    behind = reading.read(11, 100, reader=slow)
    assert len(reading._events) == 4

    assert [p for _, p in ahead.items] == [p for _, p in behind.items] == list(range(11, 15))
    # a reader behind what was let go still reads it, from the store
    assert [p for _, p in reading.read(1, 100).items] == list(range(1, 15))


@pytest.mark.parametrize("runners", [True, False])
def test_a_web_process_keeps_sealed_keys_only_for_runners_of_its_own(
    runners: bool, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    services = build(make_settings(f"sqlite:///{tmp_path}/ledger.sqlite3"), announce=lambda _: None)
    try:
        create_app(services, run_projections=runners, run_dispatcher=False)

        def receive(changes: Changes) -> bool:
            conversation = Conversation(ig_account_id=ACCOUNT, participant_id="1")
            changes.add(conversation)
            return conversation.receive_message(mid="m-1", sent_at=NOW, text="hi")

        assert services.writer.run_now(receive)
        vault = services.ledger.vault
        assert vault is not None
        # `serve --no-projections`: no runner here would ever open (and let go) the key
        assert len(vault._recent) == (1 if runners else 0)
    finally:
        services.close()
