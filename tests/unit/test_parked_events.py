"""A runner parks an event its projection keeps failing on, goes on with the rest, and
applies it when asked once the cause is gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from sqlalchemy import BigInteger, Column, MetaData, Table, Text, select
from sqlalchemy.exc import DataError, OperationalError

from interfaces.composition import Services
from projections.parked import parked_events, projection_failures
from projections.projection import LedgerProjection, on
from projections.runner import ProjectionRunner, is_poison
from projections.schema import metadata, tracking
from projections.view import Batch, SqlView
from tests.conftest import ACCOUNT, deliver, register_account

own = MetaData()
seen = Table(
    "flaky_seen", own, Column("position", BigInteger, primary_key=True), Column("text", Text)
)


class FlakyView(SqlView):
    name = "flaky"
    tables = (seen,)

    def create_tables(self) -> None:
        metadata.create_all(self.engine, tables=[tracking, projection_failures])
        own.create_all(self.engine)

    def texts(self) -> list[str]:
        with self.engine.connect() as conn:
            return [row.text for row in conn.execute(select(seen).order_by(seen.c.position))]


class Flaky(LedgerProjection[FlakyView]):
    """Fails on the text "poison" while `broken`."""

    name = "flaky"
    broken: ClassVar[bool] = True
    calls: ClassVar[list[str]] = []

    @on("dmledger:Conversation.MessageReceived")
    def _received(self, batch: Batch, event: Any, position: int) -> None:
        Flaky.calls.append(event.text)
        if Flaky.broken and event.text == "poison":
            raise ValueError("cannot hold this one")
        batch.put(seen, {"position": position, "text": event.text})


@pytest.fixture
def runner(make_services: Callable[..., Services]) -> ProjectionRunner:
    services = make_services("memory://")
    register_account(services)
    for number, text in enumerate(["first", "poison", "last"]):
        deliver(services, ACCOUNT, f"mid-{number}", text)
    view = FlakyView(services.read_models.conversation_list.engine)
    view.create_tables()
    Flaky.broken, Flaky.calls = True, []
    return ProjectionRunner(services.ledger, Flaky(view), clock=services.clock)


def test_the_event_that_fails_is_tried_three_times_then_parked(runner: ProjectionRunner) -> None:
    runner.catch_up()

    view: FlakyView = runner.projection.view
    assert view.texts() == ["first", "last"]
    assert Flaky.calls.count("poison") == 1 + 3  # the batch, then three attempts alone
    [parked] = parked_events(view.engine)
    assert parked.projection == "flaky"
    assert parked.attempts == 3
    assert parked.error == "ValueError: cannot hold this one"
    assert runner.position() == runner.ledger.recorder.max_notification_id()


def test_retry_parked_applies_it_once_the_cause_is_gone(runner: ProjectionRunner) -> None:
    runner.catch_up()

    assert runner.retry_parked() == (0, 1)
    assert parked_events(runner.projection.view.engine)[0].attempts == 4

    Flaky.broken = False
    assert runner.retry_parked() == (1, 0)
    assert sorted(runner.projection.view.texts()) == ["first", "last", "poison"]
    assert parked_events(runner.projection.view.engine) == []


def test_the_database_being_away_is_never_a_poison() -> None:
    away = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    refused = DataError("INSERT", {}, Exception("text cannot contain NUL"))

    assert not is_poison(away)
    assert is_poison(refused)
    assert is_poison(ValueError("a handler's bug"))
