"""A follower applies each batch of the log to its read models in one transaction; a
projection that fails on an event neither holds back nor undoes the others, and one that
stands apart (rebuilt, dropped) follows on its own and joins them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import BigInteger, CheckConstraint, Column, Engine, MetaData, Table, Text, event
from sqlalchemy import select as sql_select

from domain.identity import conversation_id
from interfaces.composition import Services
from projections.follower import Follower
from projections.parked import parked_events, projection_failures
from projections.projection import LedgerProjection, on
from projections.runner import ProjectionRunner
from projections.schema import metadata, tracking
from projections.view import Batch, SqlView
from tests.conftest import ACCOUNT, PARTICIPANT, deliver, register_account

own = MetaData()
stored = Table(
    "fragile_texts",
    own,
    Column("position", BigInteger, primary_key=True),
    Column("text", Text, nullable=False),
    CheckConstraint("text <> 'poison'", name="fragile_texts_no_poison"),
)


class FragileView(SqlView):
    """Its table refuses the text "poison": the database fails the batch's statement
    (which on PostgreSQL aborts the transaction it runs in)."""

    name = "fragile"
    tables = (stored,)

    def create_tables(self) -> None:
        metadata.create_all(self.engine, tables=[tracking, projection_failures])
        own.create_all(self.engine)

    def texts(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(sql_select(stored.c.text).order_by(stored.c.position)).scalars()
            )


class Fragile(LedgerProjection[FragileView]):
    name = "fragile"

    @on("dmledger:Conversation.MessageReceived")
    def _received(self, batch: Batch, event: Any, position: int) -> None:
        batch.put(stored, {"position": position, "text": event.text})


@contextmanager
def counting_commits(engine: Engine) -> Iterator[list[int]]:
    """The transactions committed on `engine` meanwhile, counted."""
    commits: list[int] = []

    def count(_: Any) -> None:
        commits.append(1)

    event.listen(engine, "commit", count)
    try:
        yield commits
    finally:
        event.remove(engine, "commit", count)


def messages(services: Services) -> list[str]:
    conversation = str(conversation_id(ACCOUNT, PARTICIPANT))
    return [m["text"] for m in services.read_models.message_history.page(conversation, limit=100)]


def test_a_projection_failing_on_an_event_leaves_the_others_batch_committed_together(
    sql_url: str, make_services: Callable[..., Services]
) -> None:
    # given a log with an event one projection's table refuses, between two it takes
    services = make_services(sql_url)
    register_account(services)
    for number, text in enumerate(["first", "poison", "last"]):
        deliver(services, ACCOUNT, f"mid-{number}", text)
    engine = services.read_models.conversation_list.engine
    fragile_view = FragileView(engine)
    fragile_view.create_tables()
    fragile = ProjectionRunner(services.ledger, Fragile(fragile_view), clock=services.clock)
    runners = services.read_models.runners
    # the fragile one first: its failure comes before the others write in the transaction
    follower = Follower(
        services.ledger,
        [fragile, runners["conversation_list"], runners["message_history"]],
        follow_commits=False,
    )
    head = services.ledger.recorder.max_notification_id()
    assert head is not None

    # when the follower applies the log (one batch)
    with counting_commits(engine) as commits:
        follower.catch_up()

    # then the others committed the whole batch in one transaction, the fragile one's
    # failure rolled back to its savepoint only; it then applied the batch alone, an event
    # a transaction, parked the event it kept failing on, and stands with the others
    assert sorted(messages(services)) == ["first", "last", "poison"]
    assert fragile_view.texts() == ["first", "last"]
    [parked] = parked_events(engine)
    assert (parked.projection, parked.attempts) == ("fragile", 3)
    assert "fragile_texts_no_poison" in parked.error or "CHECK" in parked.error
    assert len(commits) == 1 + head
    assert {r.name: r.position() for r in follower.runners} == {
        "fragile": head,
        "conversation_list": head,
        "message_history": head,
    }

    # and the next batch is one transaction for the three again
    deliver(services, ACCOUNT, "mid-3", "after")
    with counting_commits(engine) as commits:
        follower.catch_up()
    assert len(commits) == 1
    assert fragile_view.texts() == ["first", "last", "after"]


def test_read_models_standing_apart_follow_on_their_own_and_join_the_others(
    sql_url: str, make_services: Callable[..., Services]
) -> None:
    # given read models that followed the log, then one rebuilt past the others (as after
    # `dmledger projections rebuild conversation_list`) and one dropped to the start
    services = make_services(sql_url)
    register_account(services)
    read_models = services.read_models
    deliver(services, ACCOUNT, "mid-0", "one")
    deliver(services, ACCOUNT, "mid-1", "two")
    read_models.catch_up()
    deliver(services, ACCOUNT, "mid-2", "three")
    deliver(services, ACCOUNT, "mid-3", "four")
    read_models.rebuild(["conversation_list"])
    read_models.message_history.drop()
    behind = read_models.runners["outbox"].position()
    assert read_models.runners["conversation_list"].position() > behind
    assert read_models.runners["message_history"].position() == 0
    for runner in read_models.runners.values():
        runner.batch_size = 2  # a few steps each: behind, level, ahead

    # when the follower follows the log
    deliver(services, ACCOUNT, "mid-4", "five")
    read_models.catch_up()

    # then every read model reached the head with every event applied once
    head = services.ledger.recorder.max_notification_id()
    assert {h.name: h.position for h in read_models.health()} == {
        name: head for name in read_models.runners
    }
    assert sorted(messages(services)) == ["five", "four", "one", "three", "two"]
    listed = read_models.conversation_list.get(ACCOUNT, str(conversation_id(ACCOUNT, PARTICIPANT)))
    assert listed is not None
    assert listed["unread_count"] == 5

    # and, standing together, they take the next batch in three transactions: the
    # conversation list's (a follower of its own), the other read models' together, and
    # the auto-reply policy's, which acts
    deliver(services, ACCOUNT, "mid-5", "six")
    with counting_commits(read_models.conversation_list.engine) as commits:
        read_models.catch_up()
    assert len(commits) == 3
    assert "six" in messages(services)


@pytest.mark.parametrize(("share", "pauses"), [(1.0, 0), (0.25, 3)])
def test_the_follower_pauses_after_each_full_batch_of_a_backlog_when_told_to(
    tmp_path: Path,
    make_services: Callable[..., Services],
    monkeypatch: pytest.MonkeyPatch,
    share: float,
    pauses: int,
) -> None:
    from projections import follower as follower_module

    # given 25 notifications, and a follower that counts itself behind a backlog when
    # more than one batch behind the head
    services = make_services(f"sqlite:///{tmp_path}/ledger.sqlite3")
    register_account(services)
    read_models = services.read_models
    read_models.catch_up()
    start = services.ledger.recorder.max_notification_id() or 0
    while (services.ledger.recorder.max_notification_id() or 0) < start + 25:
        deliver(services, ACCOUNT, f"mid-{services.ledger.recorder.max_notification_id()}", "hi")
    assert services.ledger.recorder.max_notification_id() == start + 25
    monkeypatch.setattr(follower_module, "BACKLOG_BATCHES", 1)
    slept: list[float] = []
    monkeypatch.setattr("projections.follower.time.sleep", slept.append)
    for runner in read_models.runners.values():
        runner.batch_size = 5

    # when it follows them, five a batch, taking `share` of the time
    read_models.followers[0].catch_up_share = share  # the conversation list's
    read_models.catch_up()

    # then it paused after each batch read more than a batch behind (at 5, 10 and 15 of
    # 25), not once it was close to the head
    assert len(slept) == pauses
    assert all(pause >= 0 for pause in slept)


class Acting(LedgerProjection[SqlView]):
    """Has side effects: notes where the message history stood when it acted."""

    name = "acting"
    seen: ClassVar[list[int]] = []
    history: ClassVar[ProjectionRunner | None] = None

    def act(self, items: Sequence[tuple[Any, int]]) -> None:
        assert Acting.history is not None
        Acting.seen.append(Acting.history.position())


class ActingView(SqlView):
    name = "acting"
    tables = ()


def test_the_read_models_are_written_before_a_projection_with_side_effects_acts(
    tmp_path: Path, make_services: Callable[..., Services]
) -> None:
    # given a projection that acts (as the auto-reply policy does, through the ledger's
    # writer, which may take a while), listed first
    services = make_services(f"sqlite:///{tmp_path}/ledger.sqlite3")
    register_account(services)
    deliver(services, ACCOUNT, "mid-0", "hello")
    view = ActingView(services.read_models.message_history.engine)
    view.create_tables()
    history = services.read_models.runners["message_history"]
    Acting.seen, Acting.history = [], history
    acting = ProjectionRunner(services.ledger, Acting(view), clock=services.clock)
    follower = Follower(services.ledger, [acting, history], follow_commits=False)

    # when the follower applies the log
    follower.catch_up()

    # then the message history had committed the batch before the other acted on it
    head = services.ledger.recorder.max_notification_id()
    assert Acting.seen == [head]
    assert acting.position() == head


class CountingStop(threading.Event):
    """A stop event that records how long it is asked to wait, and is set at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.set()
        return True


@pytest.mark.parametrize(("took", "gathered"), [(7.0, 3.0), (12.0, 0.0)])
def test_commits_gather_from_when_the_last_catch_up_started_not_from_the_wake_up(
    tmp_path: Path,
    make_services: Callable[..., Services],
    monkeypatch: pytest.MonkeyPatch,
    took: float,
    gathered: float,
) -> None:
    # given the conversation list's follower, letting commits gather 10 s, whose catch-up takes
    # `took` seconds (of a clock of the test's), during which a commit wakes it
    services = make_services(f"sqlite:///{tmp_path}/ledger.sqlite3")
    register_account(services)
    follower = services.read_models.followers[0]
    for runner in follower.runners:
        runner.gather_seconds = 10.0
    now = [1000.0]
    monkeypatch.setattr("projections.follower.time.monotonic", lambda: now[0])
    follow = follower._follow

    def slow_follow(positions: dict[str, int]) -> int:
        applied = follow(positions)
        now[0] += took
        follower.wakeup.notify()
        return applied

    monkeypatch.setattr(follower, "_follow", slow_follow)
    stop = CountingStop()

    # when it runs until it lets the commits gather once
    follower.run(stop)

    # then it waited what was left of the 10 s since its catch-up started: nothing after
    # a catch-up longer than that (at most one catch-up every 10 s all the same)
    assert stop.waits == [gathered]
