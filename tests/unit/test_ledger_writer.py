"""The ledger writer: group commit, isolation of failing commands, conflicts between processes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from application.errors import InvalidInput, StorageUnavailable
from application.ledger import Ledger
from application.ledger_writer import Changes, LedgerWriter
from application.ports import NoMetrics
from domain.conversation import Conversation
from domain.identity import conversation_id
from infrastructure.persistence import persistence_env

ACCOUNT, PARTICIPANT = "17841400000000001", "5500000000000001"
CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)


def receive(mid: str) -> Callable[[Changes], bool]:
    def command(changes: Changes) -> bool:
        conversation = changes.get(CONVERSATION, Conversation)
        if conversation is None:
            conversation = Conversation(ig_account_id=ACCOUNT, participant_id=PARTICIPANT)
            changes.add(conversation)
        return conversation.receive_message(mid=mid, sent_at=1, text=mid)

    return command


def mids(ledger: Ledger) -> list[str]:
    return [
        e.mid
        for e in ledger.events.get(CONVERSATION)
        if isinstance(e, Conversation.MessageReceived)
    ]


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return persistence_env(f"sqlite:///{tmp_path}/ledger.sqlite3")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """A store two processes share: SQLite, and PostgreSQL's recorder with its own queries."""
    if request.param == "sqlite":
        return persistence_env(f"sqlite:///{tmp_path}/ledger.sqlite3")
    url: str = request.getfixturevalue("postgres_url")
    return persistence_env(url)


@pytest.fixture
def ledger(sqlite_env: dict[str, str]) -> Iterator[Ledger]:
    ledger = Ledger(env=sqlite_env)
    yield ledger
    ledger.close()


def test_waiting_commands_are_committed_together(ledger: Ledger) -> None:
    # given a writer held up by a slow first command
    writer = LedgerWriter(ledger)
    release = threading.Event()

    def slow(changes: Changes) -> bool:
        release.wait(5)
        return receive("m0")(changes)

    writer.start()
    try:
        futures = [writer.submit(slow)]
        futures += [writer.submit(receive(f"m{i}")) for i in range(1, 101)]

        # when it goes on
        release.set()
        results = [f.result(timeout=10) for f in futures]
    finally:
        writer.stop()

    # then every command is stored, in far fewer transactions than commands
    assert results == [True] * 101
    assert len(mids(ledger)) == 101
    assert writer.transactions <= 3


def test_a_rejected_command_does_not_affect_the_others(ledger: Ledger) -> None:
    writer = LedgerWriter(ledger)

    def reject(_: Changes) -> None:
        raise InvalidInput("text", "no")

    writer.start()
    try:
        ok, rejected = writer.submit(receive("m1")), writer.submit(reject)
        assert ok.result(timeout=5) is True
        with pytest.raises(InvalidInput):
            rejected.result(timeout=5)
    finally:
        writer.stop()
    assert mids(ledger) == ["m1"]


def test_a_command_that_refuses_after_changing_something_loses_its_changes(
    ledger: Ledger,
) -> None:
    # given a command that breaks the contract: it records a message, then refuses
    writer = LedgerWriter(ledger)

    def change_then_refuse(changes: Changes) -> None:
        receive("half-made")(changes)
        raise InvalidInput("text", "refused after a change")

    # when it runs in one batch between two good commands
    futures = writer.run_all([receive("m1"), change_then_refuse, receive("m2")])

    # then its caller gets the refusal, its change is not stored, and the others are
    assert futures[0].result() is True
    with pytest.raises(InvalidInput):
        futures[1].result()
    assert futures[2].result() is True
    assert mids(ledger) == ["m1", "m2"]


class Recorded(NoMetrics):
    """The writer's reports to the `Metrics` port, kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def batch_committed(self, *, commands: int, events: int, seconds: float) -> None:
        self.calls.append(("committed", (commands, events)))

    def version_conflict(self) -> None:
        self.calls.append(("conflict", None))

    def batch_rerun(self, reason: str) -> None:
        self.calls.append(("rerun", reason))


def test_a_crashing_command_loses_its_changes_but_not_the_others(ledger: Ledger) -> None:
    metrics = Recorded()
    writer = LedgerWriter(ledger, metrics=metrics)
    release = threading.Event()

    def first(changes: Changes) -> bool:
        release.wait(5)
        return receive("m1")(changes)

    def crash(changes: Changes) -> None:
        receive("half-done")(changes)
        raise RuntimeError("bug")

    writer.start()
    try:
        firsts, crashed, seconds = (
            writer.submit(first),
            writer.submit(crash),
            writer.submit(receive("m2")),
        )
        release.set()
        assert firsts.result(timeout=5) is True
        with pytest.raises(RuntimeError):
            crashed.result(timeout=5)
        assert seconds.result(timeout=5) is True
    finally:
        writer.stop()
    assert mids(ledger) == ["m1", "m2"]
    assert ("rerun", "crashed") in metrics.calls


def test_another_process_writing_the_same_conversation_is_a_conflict_that_is_retried(
    shared_env: dict[str, str],
) -> None:
    # given two processes' writers on one store, both with the conversation cached
    ledger_a, ledger_b = Ledger(env=shared_env), Ledger(env=shared_env)
    metrics = Recorded()
    a, b = LedgerWriter(ledger_a, metrics=metrics), LedgerWriter(ledger_b)
    try:
        a.run_now(receive("m1"))
        b.run_now(receive("m1"))  # a duplicate for b; b now caches the conversation too

        # when b stores m2, then a (with a stale copy) receives m2 and m3
        assert b.run_now(receive("m2")) is True
        assert a.run_now(receive("m2")) is False
        assert a.run_now(receive("m3")) is True

        # then each message is stored once, and the conflict is counted
        assert mids(ledger_a) == ["m1", "m2", "m3"]
        assert ("conflict", None) in metrics.calls
        assert ("committed", (1, 1)) in metrics.calls  # m3 (m2 was a duplicate)
    finally:
        ledger_a.close()
        ledger_b.close()


def test_a_conflict_runs_again_only_the_commands_that_read_what_another_process_changed(
    shared_env: dict[str, str],
) -> None:
    # given two processes' writers on one store, and a second conversation only `a` writes
    other = conversation_id(ACCOUNT, "5500000000000002")

    def receive_in_other(mid: str) -> Callable[[Changes], bool]:
        def command(changes: Changes) -> bool:
            conversation = changes.get(other, Conversation)
            if conversation is None:
                conversation = Conversation(
                    ig_account_id=ACCOUNT, participant_id="5500000000000002"
                )
                changes.add(conversation)
            return conversation.receive_message(mid=mid, sent_at=1, text=mid)

        return command

    # and an aggregate every command reads without changing it, as each webhook reads
    # its account
    read_by_all = conversation_id(ACCOUNT, "5500000000000003")

    def reading_it(command: Callable[[Changes], bool]) -> Callable[[Changes], bool]:
        def read_then_run(changes: Changes) -> bool:
            assert changes.get(read_by_all, Conversation, fresh=True) is not None
            return command(changes)

        return read_then_run

    ledger_a, ledger_b = Ledger(env=shared_env), Ledger(env=shared_env)
    a, b = LedgerWriter(ledger_a), LedgerWriter(ledger_b)
    try:
        a.run_now(receive("m1"))
        a.run_now(receive_in_other("n1"))
        b.run_now(
            lambda changes: changes.add(
                Conversation(ig_account_id=ACCOUNT, participant_id="5500000000000003")
            )
        )
        b.run_now(receive("m2"))  # behind a's back
        untouched_by_b = a.cache.get(other)
        committed = a.transactions

        # when one batch of a's writes to both conversations
        futures = a.run_all(
            [reading_it(receive("m3")), reading_it(receive_in_other("n2")), receive("m2")]
        )

        # then each message is stored once, the stale conversation was read again, and
        # the other one's batch was committed as it was decided, without reloading it
        assert [f.result() for f in futures] == [True, True, False]
        assert mids(ledger_a) == ["m1", "m2", "m3"]
        stored_other = [e.mid for e in ledger_a.events.get(other) if hasattr(e, "mid")]
        assert stored_other == ["n1", "n2"]
        assert a.cache.get(other) is untouched_by_b
        assert a.transactions == committed + 2
    finally:
        ledger_a.close()
        ledger_b.close()


def test_an_aggregate_a_conflicting_batch_only_read_catches_up_instead_of_reloading(
    shared_env: dict[str, str],
) -> None:
    # given a conversation cached in process a, then extended by process b
    other = conversation_id(ACCOUNT, "5500000000000002")
    ledger_a, ledger_b = Ledger(env=shared_env), Ledger(env=shared_env)
    a, b = LedgerWriter(ledger_a), LedgerWriter(ledger_b)
    try:
        a.run_now(receive("m1"))
        b.run_now(receive("m1"))
        b.run_now(receive("m2"))
        cached = a.cache.get(CONVERSATION)
        assert cached is not None

        # when a decides on it, as it stood, to write another conversation
        def decide_elsewhere(changes: Changes) -> int:
            seen = changes.get(CONVERSATION, Conversation, fresh=True)
            assert seen is not None
            elsewhere = Conversation(ig_account_id=ACCOUNT, participant_id="5500000000000002")
            changes.add(elsewhere)
            elsewhere.receive_message(mid=f"saw-{seen.version}", sent_at=1, text="")
            return seen.version

        # then the decision is taken again on the conversation as stored, caught up in place
        assert a.run_now(decide_elsewhere) == 3
        assert a.cache.get(CONVERSATION) is cached
        assert cached.version == 3
        assert [e.mid for e in ledger_a.events.get(other) if hasattr(e, "mid")] == ["saw-3"]
    finally:
        ledger_a.close()
        ledger_b.close()


def test_a_failed_commit_is_storage_unavailable_and_forgets_the_uncommitted_state(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = LedgerWriter(ledger)
    writer.run_now(receive("m1"))

    def broken_save(*_: object, **__: object) -> None:
        raise OSError("disk on fire")

    with monkeypatch.context() as patch:
        patch.setattr(ledger, "record", broken_save)
        with pytest.raises(StorageUnavailable):
            writer.run_now(receive("m2"))

    # m2 was never stored, so it must be accepted when it comes again
    assert writer.run_now(receive("m2")) is True
    assert mids(ledger) == ["m1", "m2"]


def test_a_long_conversation_is_snapshotted_and_loads_from_its_snapshot(
    ledger: Ledger, sqlite_env: dict[str, str]
) -> None:
    # given a conversation that passed its snapshot interval
    interval = ledger.snapshotting_intervals[Conversation]
    writer = LedgerWriter(ledger)
    for n in range(interval + 10):
        writer.run_now(receive(f"m{n}"))
    assert ledger.snapshots is not None
    snapshots = list(ledger.snapshots.get(CONVERSATION))
    assert [s.originator_version for s in snapshots] == [interval]

    # when another process loads it
    other = Ledger(env=sqlite_env)
    try:
        loaded: Conversation = other.repository.get(CONVERSATION)
        # then it knows what the writer knows, and redeliveries are still recognised,
        # the oldest ones too (asked of the store's index of keys)
        assert loaded.version == interval + 11
        cached = writer.cache.get(CONVERSATION)
        assert isinstance(cached, Conversation)
        assert loaded.recorded == cached.recorded
        again = LedgerWriter(other)
        assert again.run_now(receive("m3")) is False
        assert again.run_now(receive(f"m{interval + 9}")) is False
        assert mids(other) == [f"m{n}" for n in range(interval + 10)]
    finally:
        other.close()
