"""The delivery queue (infrastructure) describes the outbox projection's table again,
since neither layer may import the other: both descriptions must agree."""

from __future__ import annotations

from sqlalchemy import Table

from infrastructure import delivery_tables
from projections import schema
from projections.outbox import view


def test_the_queue_reads_the_outbox_as_the_projection_writes_it() -> None:
    def columns(table: Table) -> list[tuple[str, str, bool | None, bool]]:
        return [(c.name, repr(c.type), c.nullable, c.primary_key) for c in table.columns]

    assert delivery_tables.outbox.name == view.outbox.name
    assert columns(delivery_tables.outbox) == columns(view.outbox)


def test_the_queue_writes_with_the_engines_writing_option() -> None:
    assert delivery_tables.WRITING == schema.WRITING


def test_the_queue_never_creates_the_outbox() -> None:
    assert delivery_tables.outbox not in delivery_tables.OWN_TABLES
    assert {t.name for t in delivery_tables.OWN_TABLES}.isdisjoint(
        t.name for t in view.OutboxView.tables
    )
