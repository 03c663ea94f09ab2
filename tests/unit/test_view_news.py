"""A view tells its listeners about a batch only when it changed the tables they care for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from sqlalchemy import Column, Integer, MetaData, String, Table

from projections.database import create_view_engine
from projections.view import Batch, SqlView

_metadata = MetaData()
deliveries = Table(
    "news_deliveries", _metadata, Column("id", String(8), primary_key=True), Column("n", Integer)
)
parties = Table(
    "news_parties", _metadata, Column("id", String(8), primary_key=True), Column("n", Integer)
)


class DeliveriesView(SqlView):
    name = "news"
    tables = (deliveries, parties)
    announced = (deliveries,)


@pytest.fixture
def view(tmp_path: Path) -> Iterator[DeliveriesView]:
    engine = create_view_engine(f"sqlite:///{tmp_path}/views.sqlite3")
    view = DeliveriesView(engine)
    view.create_tables()
    _metadata.create_all(engine)
    yield view
    engine.dispose()


def putting(table: Table, row: dict[str, Any]) -> Callable[[Batch], None]:
    """A batch's work that puts this row in this table."""

    def put(batch: Batch) -> None:
        batch.put(table, row)

    return put


def test_listeners_hear_only_of_batches_that_change_announced_tables(
    view: DeliveriesView,
) -> None:
    heard: list[int] = []
    stop = view.on_applied(lambda: heard.append(1))

    # a batch that only changes a table nobody listens for
    view.apply(Tracking("dmledger", 1), putting(parties, {"id": "a", "n": 1}))
    # a batch that changes nothing
    view.apply(Tracking("dmledger", 2), lambda b: None)
    assert heard == []
    assert view.max_tracking_id("dmledger") == 2

    # a batch that adds a delivery
    view.apply(Tracking("dmledger", 3), putting(deliveries, {"id": "d", "n": 1}))
    assert heard == [1]

    # a batch that deletes one
    def remove(batch: Batch) -> None:
        row = batch.get(deliveries, ("d",))
        assert row is not None
        batch.delete(deliveries, row)

    view.apply(Tracking("dmledger", 4), remove)
    assert heard == [1, 1]

    stop()
    view.apply(Tracking("dmledger", 5), putting(deliveries, {"id": "e", "n": 1}))
    assert heard == [1, 1]
