"""The runners of a process read the log together: a batch read and decoded once, kept in
a window that holds every notification from its first to its last. A runner still asks
the store for what may follow the window (new commits), but decodes and opens only that."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from eventsourcing.persistence import Notification

from application.ledger import Ledger
from domain.conversation import Conversation
from infrastructure.persistence import persistence_env
from projections.shared_reading import SharedReading


class CountingLedger:
    """A ledger in memory whose recorder counts the selects of notifications."""

    def __init__(self) -> None:
        self.ledger = Ledger(env=persistence_env("memory://"))
        self.selects: list[tuple[int | None, int]] = []
        recorder = self.ledger.recorder
        select = recorder.select_notifications

        def counted(
            start: int | None,
            limit: int,
            stop: int | None = None,
            topics: Sequence[str] = (),
            *,
            inclusive_of_start: bool = True,
        ) -> Sequence[Notification]:
            self.selects.append((start, limit))
            return select(start, limit, stop, topics, inclusive_of_start=inclusive_of_start)

        # the instance's method replaced by one that counts (mypy checks it has the same type)
        recorder.select_notifications = counted  # type: ignore[method-assign]

    def store_messages(self, count: int, participant: str = "5500000000000001") -> None:
        conversation = Conversation(ig_account_id="17841400000000001", participant_id=participant)
        for n in range(count):
            conversation.receive_message(mid=f"{participant}-{n}", sent_at=n, text=f"hi {n}")
        self.ledger.save(conversation)


@pytest.fixture
def log() -> CountingLedger:
    return CountingLedger()


def positions(read: Any) -> list[int]:
    return [position for _, position in read.items]


def test_a_batch_is_read_once_for_every_runner(log: CountingLedger) -> None:
    log.store_messages(9)  # 10 notifications: the start and 9 messages
    reading = SharedReading(log.ledger)

    first = reading.read(1, 100)
    second = reading.read(1, 100)
    third = reading.read(4, 100)

    # each later runner reads from the store only what may have come after the window
    assert log.selects == [(1, 100), (11, 90), (11, 93)]
    assert positions(first) == positions(second) == list(range(1, 11))
    assert positions(third) == list(range(4, 11))
    assert first.items[0][0] is second.items[0][0]  # the same event, decoded once
    assert (first.last, first.count, third.count) == (10, 10, 7)


def test_what_follows_the_window_is_read_once_and_extends_it(log: CountingLedger) -> None:
    log.store_messages(4)
    reading = SharedReading(log.ledger)
    reading.read(1, 100)
    log.store_messages(3, participant="5500000000000002")

    ahead = reading.read(3, 100)  # 3..5 kept, 6..9 read
    behind = reading.read(1, 100)  # all kept now

    assert log.selects == [(1, 100), (6, 97), (10, 91)]
    assert positions(ahead) == list(range(3, 10))
    assert positions(behind) == list(range(1, 10))


def test_a_runner_behind_the_window_reads_on_its_own(log: CountingLedger) -> None:
    log.store_messages(9)
    reading = SharedReading(log.ledger, keep=4)
    reading.read(1, 100)  # keeps 7..10 only

    behind = reading.read(2, 3)
    kept = reading.read(7, 4)

    assert log.selects == [(1, 100), (2, 3)]  # a full batch from the window asks nothing
    assert positions(behind) == [2, 3, 4]
    assert positions(kept) == [7, 8, 9, 10]


def test_the_head_of_the_log_reads_nothing(log: CountingLedger) -> None:
    log.store_messages(2)
    reading = SharedReading(log.ledger)
    reading.read(1, 100)

    at_head = reading.read(4, 100)

    assert (at_head.last, at_head.count, at_head.items) == (None, 0, [])


def test_the_window_lets_go_of_what_every_follower_has_passed(log: CountingLedger) -> None:
    # (P6: following the head, the window holds a batch or so, not `KEEP` events)
    log.store_messages(9)  # 1..10
    reading = SharedReading(log.ledger)
    fast, slow = object(), object()
    reading.read(1, 100, reader=fast)
    reading.read(1, 100, reader=slow)
    log.store_messages(3, participant="5500000000000002")  # 11..14

    # when one follower moves on, the window keeps what the other has not read yet
    ahead = reading.read(11, 100, reader=fast)
    assert len(reading._events) == 14
    # and when both have, only what they read last
    behind = reading.read(11, 100, reader=slow)
    assert len(reading._events) == 4

    assert positions(ahead) == positions(behind) == list(range(11, 15))
    # a reader behind what was let go still reads it, from the store
    assert positions(reading.read(1, 100)) == list(range(1, 15))
