"""The hash chain over the log: links made on insert, and the verifier's verdicts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from application.audit import ChainBreak, ChainReport
from application.ledger import Ledger
from domain.conversation import Conversation
from infrastructure.chained_recorders import ChainedSQLiteRecorder, chain_verifier, install_chain
from infrastructure.event_chain import ChainKeyring, ChainVerifier, Link, LinkedEvent
from infrastructure.persistence import persistence_env
from infrastructure.secret_box import FernetSecretBox

KEY = FernetSecretBox.new_key()
A, B = uuid4(), uuid4()


class FakeLog:
    """A log held in a list, links and all, that a test can tamper with."""

    def __init__(
        self, keyring: ChainKeyring, events: list[tuple[UUID, int]], *, unchained: int = 0
    ) -> None:
        """The first `unchained` events were stored before the chain existed."""
        self.chain: ChainKeyring | None = keyring
        stored = [
            (i + 1, oid, v, "dmledger:T", f"{oid}:{v}".encode())
            for i, (oid, v) in enumerate(events)
        ]
        self.events = [LinkedEvent(*s, link=None) for s in stored[:unchained]]
        self.links: list[Link] = keyring.links(stored[unchained:], lambda o, v: None)
        self.events += [
            LinkedEvent(*s, link=link)
            for s, link in zip(stored[unchained:], self.links, strict=True)
        ]

    def select_linked(self, start: int, limit: int) -> Sequence[LinkedEvent]:
        found = sorted((e for e in self.events if e.position >= start), key=lambda e: e.position)
        return found[:limit]

    def orphan_links(self) -> Sequence[Link]:
        present = {(e.originator_id, e.version) for e in self.events}
        return [k for k in self.links if (k.originator_id, k.version) not in present]

    def first_linked_position(self) -> int | None:
        return min((k.position for k in self.links), default=None)

    def max_notification_id(self) -> int | None:
        return max((e.position for e in self.events), default=None)


HISTORY = [(A, 1), (B, 1), (A, 2), (A, 3), (B, 2), (A, 4)]


def verify(log: FakeLog, aggregates: set[UUID] | None = None) -> ChainReport:
    return ChainVerifier(log, ChainKeyring([KEY]), page_size=2).verify(aggregates)


def first_break(log: FakeLog) -> ChainBreak:
    broken = verify(log).broken
    assert broken is not None
    return broken


def test_an_untouched_log_verifies() -> None:
    report = verify(FakeLog(ChainKeyring([KEY]), HISTORY))
    assert report.intact
    assert (report.checked, report.chained, report.unchained) == (6, 6, 0)


def test_an_altered_state_breaks_the_chain_at_that_event() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    log.events[3] = dataclasses.replace(log.events[3], state=b"edited")

    broken = first_break(log)

    assert (broken.kind, broken.position, broken.version) == ("altered", 4, 3)


def test_a_deleted_event_in_the_middle_is_a_missing_version() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    del log.events[2]  # A's version 2, with its link still stored

    broken = first_break(log)

    assert (broken.kind, broken.position, broken.version) == ("deleted", 3, 2)


def test_the_deleted_newest_event_of_an_aggregate_is_found_by_its_link() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    del log.events[5]

    broken = first_break(log)

    assert (broken.kind, broken.version) == ("deleted", 4)


def test_events_swapped_in_the_log_are_reported_as_reordered() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    first, second = log.events[1], log.events[2]
    log.events[1] = dataclasses.replace(second, position=first.position)
    log.events[2] = dataclasses.replace(first, position=second.position)

    broken = first_break(log)

    assert (broken.kind, broken.position) == ("reordered", 2)


def test_an_added_event_without_a_link_after_the_chain_began_is_a_break() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    log.events.append(LinkedEvent(7, B, 3, "dmledger:T", b"forged", None))

    broken = first_break(log)

    assert (broken.kind, broken.position) == ("unlinked", 7)


def test_a_link_forged_with_another_key_is_reported() -> None:
    log = FakeLog(ChainKeyring([FernetSecretBox.new_key()]), HISTORY)

    broken = first_break(log)

    assert (broken.kind, broken.position) == ("unknown-key", 1)


def test_links_made_before_a_key_rotation_still_verify() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    rotated = ChainKeyring([FernetSecretBox.new_key(), KEY])

    assert ChainVerifier(log, rotated).verify().intact


def test_events_stored_before_the_chain_are_unchained_not_broken() -> None:
    # the chain began at the fifth event, B's version 2
    log = FakeLog(ChainKeyring([KEY]), HISTORY, unchained=4)

    report = verify(log)

    assert report.intact
    assert (report.unchained, report.chained) == (4, 2)


def test_an_early_event_that_lost_its_link_is_a_break_not_unchained() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    log.events[3] = dataclasses.replace(log.events[3], link=None)
    log.links.pop(3)

    broken = first_break(log)

    assert (broken.kind, broken.position) == ("unlinked", 4)


def test_checking_one_aggregate_ignores_breaks_in_others() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    log.events[4] = dataclasses.replace(log.events[4], state=b"edited")  # B's version 2

    assert verify(log, {A}).intact
    assert verify(log, {B}).broken == first_break(log)


def test_the_sqlite_ledger_writes_a_link_for_every_event_in_the_same_insert(
    tmp_path: Path,
) -> None:
    ledger = Ledger(env=persistence_env(f"sqlite:///{tmp_path}/ledger.sqlite3"))
    assert isinstance(ledger.recorder, ChainedSQLiteRecorder)
    assert install_chain(ledger.recorder, [KEY])
    conversation = Conversation(ig_account_id="1", participant_id="2")
    for i in range(3):
        conversation.receive_message(mid=f"m{i}", sent_at=i)
    ledger.save(conversation)  # four events in one insert
    conversation.archive(by="test")
    ledger.save(conversation)  # one more, chained to the stored fourth

    linked = ledger.recorder.select_linked(1, 10)
    verifier = chain_verifier(ledger.recorder)

    assert [e.link is not None for e in linked] == [True] * 5
    assert verifier is not None
    assert verifier.verify().chained == 5
    ledger.close()


def test_a_ledger_without_keys_stores_unchained_events(tmp_path: Path) -> None:
    ledger = Ledger(env=persistence_env(f"sqlite:///{tmp_path}/ledger.sqlite3"))
    ledger.save(Conversation(ig_account_id="1", participant_id="2"))

    assert isinstance(ledger.recorder, ChainedSQLiteRecorder)
    assert [e.link for e in ledger.recorder.select_linked(1, 10)] == [None]
    assert chain_verifier(ledger.recorder) is None
    ledger.close()


@pytest.mark.parametrize("secret", ["", "not a key"])
def test_the_keyring_needs_a_key(secret: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        ChainKeyring([secret] if secret else [])


@pytest.mark.postgres
def test_postgres_links_chain_across_inserts_and_processes(postgres_url: str) -> None:
    # given two processes' ledgers on one PostgreSQL log, each remembering its last links
    env = persistence_env(postgres_url)
    first, second = Ledger(env=env), Ledger(env=env)
    for ledger in (first, second):
        assert install_chain(ledger.recorder, [KEY])
    try:
        conversation = Conversation(ig_account_id="1", participant_id="2")
        conversation.receive_message(mid="m0", sent_at=0)
        first.save(conversation)
        # when the first extends it twice (the second time from the link it remembers),
        for i in (1, 2):
            conversation.receive_message(mid=f"m{i}", sent_at=i)
            first.save(conversation)
        # the second process extends it (reading the first's link back),
        theirs = second.repository.get(conversation.id)
        theirs.receive_message(mid="m3", sent_at=3)
        second.save(theirs)
        # and the first extends it again, though what it remembers is now out of date
        mine = first.repository.get(conversation.id)
        mine.receive_message(mid="m4", sent_at=4)
        first.save(mine)

        # then every event is linked to the one before it
        verifier = chain_verifier(first.recorder)
        assert verifier is not None
        report = verifier.verify()
        assert report.intact
        assert report.chained == 6
    finally:
        first.close()
        second.close()
