"""The hash chain over the log: links made on insert, and the verifier's verdicts."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from application.audit import ChainBreak, ChainReport
from application.ledger import Ledger
from domain.conversation import Conversation
from infrastructure.chain_verifier import ChainVerifier
from infrastructure.chained_recorders import ChainedSQLiteRecorder, chain_verifier, install_chain
from infrastructure.event_chain import ChainKeyring, Checkpoint, Genesis, Link, LinkedEvent, Tail
from infrastructure.persistence import persistence_env
from infrastructure.secret_box import FernetSecretBox
from interfaces.cli_db import upgrade_database

KEY = FernetSecretBox.new_key()
A, B, C = uuid4(), uuid4(), uuid4()


class FakeLog:
    """A log held in a list, links and all, that a test can tamper with."""

    def __init__(
        self, keyring: ChainKeyring, events: list[tuple[UUID, int]], *, unchained: int = 0
    ) -> None:
        """The first `unchained` events were stored before the chain existed."""
        self.chain: ChainKeyring | None = keyring
        self.keyring = keyring
        self.events: list[LinkedEvent] = []
        self.links: list[Link] = []
        self.genesis: Genesis | None = None
        self.append(events[:unchained], linked=False)
        self.append(events[unchained:])

    def append(self, events: list[tuple[UUID, int]], *, linked: bool = True) -> None:
        """Store events as one insert does, chaining them if `linked`."""
        start = max((e.position for e in self.events), default=0) + 1
        stored = [
            (start + i, oid, v, "dmledger:T", f"{oid}:{v}".encode())
            for i, (oid, v) in enumerate(events)
        ]
        if not linked:
            self.events += [LinkedEvent(*s, link=None) for s in stored]
            return
        digests = {(k.originator_id, k.version): k.digest for k in self.links}
        links, genesis = self.keyring.extend(
            stored, lambda o, v: digests.get((o, v)), self.chain_tail()
        )
        self.genesis = self.genesis or genesis
        self.links += links
        self.events += [LinkedEvent(*s, link=k) for s, k in zip(stored, links, strict=True)]

    def select_linked(self, start: int, limit: int) -> Sequence[LinkedEvent]:
        found = sorted((e for e in self.events if e.position >= start), key=lambda e: e.position)
        return found[:limit]

    def orphan_links(self) -> Sequence[Link]:
        present = {(e.originator_id, e.version) for e in self.events}
        return [k for k in self.links if (k.originator_id, k.version) not in present]

    def chain_tail(self) -> Tail:
        logged = [k for k in self.links if k.previous_position is not None]
        newest = max(logged, key=lambda k: k.position, default=None)
        return Tail(
            genesis=self.genesis,
            last=(newest.position, newest.digest) if newest is not None else None,
            first_linked=min((k.position for k in self.links), default=None),
        )

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


def delete_aggregate(log: FakeLog, originator_id: UUID) -> None:
    """As an intruder would: the aggregate's events and their links, all of them."""
    log.events = [e for e in log.events if e.originator_id != originator_id]
    log.links = [k for k in log.links if k.originator_id != originator_id]


def test_an_aggregate_deleted_with_its_links_breaks_the_log_chain() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    delete_aggregate(log, B)  # positions 2 and 5

    broken = first_break(log)

    assert (broken.kind, broken.position) == ("deleted", 3)
    assert "the event before it in the log, at position 2, is missing" in broken.detail


def test_the_oldest_chained_events_deleted_with_their_links_are_found() -> None:
    log = FakeLog(ChainKeyring([KEY]), [(B, 1), *HISTORY[:1], (C, 1), (C, 2)])
    delete_aggregate(log, B)  # the first event of the log chain

    broken = first_break(log)

    assert (broken.kind, broken.position) == ("deleted", 2)


def test_the_chain_emptied_of_its_links_is_a_break_at_its_first_event() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY, unchained=2)
    log.events = [dataclasses.replace(e, link=None) for e in log.events]
    log.links = []

    report = verify(log)

    assert report.broken is not None
    assert (report.broken.kind, report.broken.position) == ("unlinked", 3)
    assert report.unchained == 2  # the two stored before the chain began


@pytest.mark.parametrize(("links", "kind"), [(True, "no-genesis"), (False, "no-chain")])
def test_a_log_without_its_genesis_is_a_break(links: bool, kind: str) -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    log.genesis = None
    if not links:
        log.events = [dataclasses.replace(e, link=None) for e in log.events]
        log.links = []

    broken = first_break(log)

    assert (broken.kind, broken.position) == (kind, 1)


def test_an_altered_genesis_is_a_break() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY, unchained=2)
    assert log.genesis is not None
    log.genesis = dataclasses.replace(log.genesis, began_at=5)  # to pass events 3 and 4 off

    assert first_break(log).kind == "altered"


def test_an_empty_log_verifies() -> None:
    assert verify(FakeLog(ChainKeyring([KEY]), [])).intact


def test_links_made_before_the_log_chain_still_verify_and_the_log_chain_follows() -> None:
    # given a log whose first three events got aggregate-only links (as dmledger made them
    # before the log chain existed), and no genesis yet
    keyring = ChainKeyring([KEY])
    log = FakeLog(keyring, HISTORY[:3], unchained=3)
    made: dict[UUID, bytes] = {}
    for i, event in enumerate(log.events):
        digest = keyring.digest(
            keyring.signing_key_id,
            originator_id=event.originator_id,
            version=event.version,
            position=event.position,
            topic=event.topic,
            state=event.state,
            previous=made.get(event.originator_id),
        )
        made[event.originator_id] = digest
        link = Link(
            event.originator_id, event.version, event.position, keyring.signing_key_id, digest
        )
        log.links.append(link)
        log.events[i] = dataclasses.replace(event, link=link)
    # when this version stores more
    log.append(HISTORY[3:])

    report = verify(log)

    assert report.intact, report.broken
    assert (report.chained, report.chain_began_at) == (6, 1)
    assert log.genesis is not None
    assert log.genesis.log_began_at == 4
    # and an aggregate-only link after the log chain began would be a break
    late = log.events[4]
    assert late.link is not None
    log.events[4] = dataclasses.replace(
        late, link=dataclasses.replace(late.link, previous_position=None)
    )
    assert first_break(log).position == 5


def test_a_checkpoint_round_trips_as_text_and_its_signature_holds() -> None:
    keyring = ChainKeyring([KEY])
    checkpoint = keyring.checkpoint(position=12, began_at=3, digest=b"\x07" * 32)

    parsed = Checkpoint.parse(checkpoint.token() + "\n")

    assert parsed == checkpoint
    assert keyring.checkpoint_holds(parsed)
    assert not keyring.checkpoint_holds(dataclasses.replace(parsed, position=13))
    with pytest.raises(ValueError, match="not a dmledger checkpoint"):
        Checkpoint.parse("dmledger-checkpoint-v1:12")


def checkpoint_of(log: FakeLog) -> Checkpoint:
    tail = log.chain_tail()
    assert tail.genesis is not None
    assert tail.last is not None
    return log.keyring.checkpoint(
        position=tail.last[0], began_at=tail.genesis.began_at, digest=tail.last[1]
    )


def test_a_log_that_grew_after_a_checkpoint_extends_it() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY[:4])
    checkpoint = checkpoint_of(log)
    log.append(HISTORY[4:])

    report = ChainVerifier(log, log.keyring).verify(against=checkpoint)

    assert report.intact
    assert report.extends == 4


def test_a_log_cut_short_below_a_checkpoint_does_not_extend_it() -> None:
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    checkpoint = checkpoint_of(log)
    log.events, log.links = log.events[:4], log.links[:4]

    assert verify(log).intact  # alone, the log cannot tell
    report = ChainVerifier(log, log.keyring).verify(against=checkpoint)

    assert report.broken is not None
    assert (report.broken.kind, report.broken.position) == ("truncated", 6)


def test_a_chain_begun_again_does_not_extend_an_older_checkpoint() -> None:
    # given a checkpoint, then every link and the genesis deleted, and new events chained
    log = FakeLog(ChainKeyring([KEY]), HISTORY)
    checkpoint = checkpoint_of(log)
    log.events = [dataclasses.replace(e, link=None) for e in log.events]
    log.links, log.genesis = [], None
    log.append([(C, 1)])

    assert verify(log).intact  # alone, the log looks chained from position 7 on
    report = ChainVerifier(log, log.keyring).verify(against=checkpoint)

    assert report.broken is not None
    assert report.broken.kind == "not-extended"


def test_the_sqlite_ledger_writes_a_link_for_every_event_in_the_same_insert(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    upgrade_database(url)  # the chain's tables are the migrations'
    ledger = Ledger(env=persistence_env(url))
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
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    upgrade_database(url)
    ledger = Ledger(env=persistence_env(url))
    ledger.save(Conversation(ig_account_id="1", participant_id="2"))

    assert isinstance(ledger.recorder, ChainedSQLiteRecorder)
    assert [e.link for e in ledger.recorder.select_linked(1, 10)] == [None]
    assert chain_verifier(ledger.recorder) is None
    ledger.close()


Sql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Sql]:
    """A database URL and a way to run SQL on it (written for SQLite's table names)."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"

        def run_sqlite(statement: str, *params: Any) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as db:
                return db.execute(statement, params).fetchall()

        return f"sqlite:///{path}", run_sqlite
    url: str = request.getfixturevalue("postgres_url")
    base, _, schema = url.partition("?schema=")

    def run_postgres(statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(base, autocommit=True) as db:
            db.execute(f'SET search_path TO "{schema}"')
            translated = (
                statement.replace("stored_events", "dmledger_events")
                .replace("rowid", "notification_id")
                .replace("?", "%s")
            )
            cursor = db.execute(translated, params)
            return cursor.fetchall() if cursor.description else []

    return url, run_postgres


def test_a_chain_made_before_the_log_chain_is_upgraded_and_continued(
    database: tuple[str, Sql],
) -> None:
    # given a database as a version before the log chain and before migrations left it:
    # its chain table without previous_position, aggregate-only links, no genesis
    url, sql = database
    upgrade_database(url)
    old = Ledger(env=persistence_env(url))
    conversation = Conversation(ig_account_id="1", participant_id="2")
    conversation.receive_message(mid="m0", sent_at=0)
    old.save(conversation)
    old.close()
    keyring = ChainKeyring([KEY])
    sql("DROP TABLE stored_events_chain_genesis")
    sql("ALTER TABLE stored_events_chain DROP COLUMN previous_position")
    sql("ALTER TABLE projection_tracking DROP COLUMN definition_version")
    sql("DROP TABLE dmledger_schema_version")
    previous = None
    rows = sql(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
        "ORDER BY rowid"
    )
    for position, originator_id, version, topic, state in rows:
        previous = keyring.digest(
            keyring.signing_key_id,
            originator_id=originator_id if isinstance(originator_id, UUID) else UUID(originator_id),
            version=version,
            position=position,
            topic=topic,
            state=bytes(state),
            previous=previous,
        )
        sql(
            "INSERT INTO stored_events_chain VALUES (?,?,?,?,?)",
            originator_id,
            version,
            position,
            keyring.signing_key_id,
            previous,
        )
    # when `dmledger db upgrade` runs, and this version opens it and stores more
    upgrade_database(url)
    ledger = Ledger(env=persistence_env(url))
    assert install_chain(ledger.recorder, [KEY])
    mine: Conversation = ledger.repository.get(conversation.id)
    mine.receive_message(mid="m1", sent_at=1)
    ledger.save(mine)

    # then the old links verify, and the new one chains the log from a genesis after them
    verifier = chain_verifier(ledger.recorder)
    assert verifier is not None
    report = verifier.verify()
    assert report.intact, report.broken
    assert (report.chained, report.chain_began_at) == (3, 1)
    genesis = verifier.log.chain_tail().genesis
    assert genesis is not None
    assert genesis.log_began_at == 3
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
        theirs: Conversation = second.repository.get(conversation.id)
        theirs.receive_message(mid="m3", sent_at=3)
        second.save(theirs)
        # and the first extends it again, though what it remembers is now out of date
        mine: Conversation = first.repository.get(conversation.id)
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


@pytest.mark.postgres
def test_two_processes_writing_at_once_make_one_log_chain(postgres_url: str) -> None:
    # given two processes' ledgers on one PostgreSQL log
    env = persistence_env(postgres_url)
    ledgers = [Ledger(env=env), Ledger(env=env)]
    for ledger in ledgers:
        assert install_chain(ledger.recorder, [KEY])
    errors: list[BaseException] = []

    def write(ledger: Ledger, participant: str) -> None:
        try:
            for i in range(30):
                conversation = Conversation(ig_account_id="1", participant_id=f"{participant}{i}")
                conversation.receive_message(mid=f"{participant}{i}", sent_at=i)
                ledger.save(conversation)
        except BaseException as error:  # reported by the test below
            errors.append(error)

    # when both store conversations at the same time
    threads = [
        threading.Thread(target=write, args=(ledger, name))
        for ledger, name in zip(ledgers, ("a", "b"), strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors

        # then every event is linked to the log's previous one, whichever process wrote it
        verifier = chain_verifier(ledgers[0].recorder)
        assert verifier is not None
        report = verifier.verify()
        assert report.intact, report.broken
        assert report.chained == 120
    finally:
        for ledger in ledgers:
            ledger.close()
