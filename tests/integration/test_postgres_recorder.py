"""The ledger's PostgreSQL recorder: the one-round-trip group commit and its read check."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import RecordConflictError, StoredEvent
from eventsourcing.utils import register_topic

from application.ledger import Ledger
from application.ledger_writer import Changes
from domain.account import Account
from domain.identity import account_id
from infrastructure.persistence import persistence_env
from interfaces.composition import Services
from tests.conftest import ACCOUNT, register_account

pytestmark = pytest.mark.postgres

MakeServices = Callable[..., Services]


class Touched(Account.Event):
    """A change to an account made elsewhere (a test stand-in for a credential rotation)."""

    TOPIC = "dmledger-tests:Account.Touched"


register_topic(Touched.TOPIC, Touched)


def event(originator: UUID, version: int, state: bytes = b"{}") -> StoredEvent:
    return StoredEvent(originator, version, "test:Thing", state)


def test_a_batch_is_stored_in_order_with_its_bytes_intact(
    postgres_url: str, make_services: MakeServices
) -> None:
    recorder = make_services(postgres_url).ledger.recorder
    a, b = uuid4(), uuid4()
    states = [b'{"n":1}', b"\x00\xff binary \\ 'quoted'", "Gr\u00fc\u00dfe \U0001f4e6".encode()]

    ids = recorder.insert_events(
        [event(a, 1, states[0]), event(b, 1, states[1]), event(a, 2, states[2])]
    )

    assert ids is not None
    assert len(ids) == 3
    assert list(ids) == sorted(ids)
    assert [e.state for e in recorder.select_events(a)] == [states[0], states[2]]
    assert [e.state for e in recorder.select_events(b)] == [states[1]]
    notifications = recorder.select_notifications(start=None, limit=10)
    assert [n.id for n in notifications] == list(ids)


def test_a_conflicting_batch_stores_nothing_and_the_next_one_goes_through(
    postgres_url: str, make_services: MakeServices
) -> None:
    recorder = make_services(postgres_url).ledger.recorder
    a, b = uuid4(), uuid4()
    recorder.insert_events([event(a, 1)])

    with pytest.raises(RecordConflictError):
        recorder.insert_events([event(b, 1), event(a, 1)])

    assert recorder.select_events(b) == []
    recorder.insert_events([event(b, 1)])
    assert len(recorder.select_events(b)) == 1


def test_a_batch_decided_on_an_aggregate_that_moved_on_is_refused(
    postgres_url: str, make_services: MakeServices
) -> None:
    recorder = make_services(postgres_url).ledger.recorder
    read, written = uuid4(), uuid4()
    recorder.insert_events([event(read, 1), event(read, 2)])

    with pytest.raises(RecordConflictError):
        recorder.insert_events([event(written, 1)], expected_versions={read: 1})
    with pytest.raises(RecordConflictError):
        recorder.insert_events([], expected_versions={read: 1})

    assert recorder.select_events(written) == []
    assert recorder.insert_events([event(written, 1)], expected_versions={read: 2})


def test_an_account_changed_by_another_process_is_seen_by_the_next_command(
    postgres_url: str, make_services: MakeServices
) -> None:
    # given a process that has the account cached
    first = make_services(postgres_url)
    register_account(first)

    def version_seen(changes: Changes) -> int:
        account = changes.get(account_id(ACCOUNT), Account, fresh=True)
        assert account is not None
        return account.version

    assert first.writer.run_now(version_seen) == 1

    # when another process stores an event of that account
    other = make_services(postgres_url)
    account: Account = other.ledger.repository.get(account_id(ACCOUNT))
    account.trigger_event(Touched)
    other.ledger.save(account)

    # then the first process decides its next command on the account as it is now
    assert first.writer.run_now(version_seen) == 2


def test_an_insert_gives_its_connection_back_as_it_took_it_so_snapshots_can_be_stored(
    postgres_url: str,
) -> None:
    # given the ledger and its snapshot store on one pooled connection (they share a pool)
    ledger = Ledger(env=persistence_env(f"{postgres_url}&pool_size=1"))
    try:
        a = uuid4()

        # when events are inserted, then snapshots are stored (on whichever pooled
        # connection the pool hands out: the one the insert used among them)
        ledger.recorder.insert_events([event(a, 1)])
        assert ledger.snapshots is not None
        for version in (1, 2, 3):
            ledger.snapshots.recorder.insert_events([event(a, version)])

        # then they are there (the library's snapshot insert asserts autocommit, which the
        # ledger's insert had turned off on its connection: such snapshots were lost)
        stored = ledger.snapshots.recorder.select_events(a)
        assert [s.originator_version for s in stored] == [1, 2, 3]
    finally:
        ledger.close()
