"""The delivery queue's tables, and the outbox table as the queue reads it.

The outbox projection (`projections/outbox/view.py`) writes the `outbox` table; the
delivery queue (`infrastructure/delivery_queue.py`) reads it and keeps the dispatcher's
state of each delivery in tables of its own. Infrastructure may not import projections
(nor they it: `tests/unit/test_layers.py`), so the queue describes the `outbox` table
here again, as a read-only view of the same table in the same database. It never creates
it; `tests/unit/test_delivery_tables.py` checks that both descriptions agree, column by
column. The queue's own tables are described here and created and migrated by
`infrastructure/migrations` (they are not rebuilt from the log); they survive a rebuild
of the outbox: what was delivered stays delivered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Insert,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

metadata = MetaData()

outbox = Table(
    "outbox",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("ig_account_id", String(32), nullable=False),
    Column("conversation_id", String(36), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("outcome", String(16)),
    Column("content_key", String(32)),
    Column("profile_recorded_at", BigInteger),
)
"""The outbox projection's table, read only (never created from here)."""

delivery_state = Table(
    "delivery_state",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("leased_until", BigInteger, nullable=False),
    Column("lease_owner", String(64)),
    Column("history", JSON, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
"""Each delivery's `status` (pending, sending, retrying, delivered, dead or ambiguous),
attempts, lease and the history of its last 20 attempts."""

Index(
    "delivery_state_dead",
    delivery_state.c.delivery_id,
    postgresql_where=delivery_state.c.status == "dead",
    sqlite_where=delivery_state.c.status == "dead",
)
"""The dead deliveries alone, for the metrics' count (a scrape must not read every
delivery ever made); other rows never enter it."""

delivery_queue = Table(
    "delivery_queue",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("ig_account_id", String(32), nullable=False),
    Column("conversation_id", String(36), nullable=False),
    Column("position", BigInteger, nullable=False),
    Index("delivery_queue_due", "channel", "position"),
    Index("delivery_queue_by_conversation", "conversation_id", "channel", "position"),
    Index("delivery_queue_by_account", "ig_account_id", "channel"),
)
"""The deliveries adopted from the outbox and not finished yet."""

delivery_cursors = Table(
    "delivery_cursors",
    metadata,
    Column("channel", String(16), primary_key=True),
    Column("position", BigInteger, nullable=False),
)
"""How far into the outbox each channel's queue has adopted rows."""

OWN_TABLES = (delivery_state, delivery_queue, delivery_cursors)

FINISHED = ("delivered", "dead", "ambiguous")
"""States after which a conversation's next delivery may leave."""

WRITING = "dmledger_writing"
"""The execution option of the read models' engine for a transaction that writes
(`projections/database.py`: SQLite then takes its write lock up front)."""


def writing(engine: Engine) -> AbstractContextManager[Connection]:
    """A transaction that writes."""
    return engine.execution_options(**{WRITING: True}).begin()


def dialect_of(conn: Connection) -> Any:
    """SQLAlchemy's dialect module for the connection (for ON CONFLICT)."""
    return postgresql if conn.dialect.name == "postgresql" else sqlite


def upsert_states(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace these `delivery_state` rows; on PostgreSQL in one statement, the
    rows sent as one JSON document (an executemany sends one INSERT per row; the same
    technique as `projections.schema.upsert_many`, which this layer may not import)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and len(rows) > 1:
        conn.execute(_upsert_from_json(), {"rows": json.dumps(list(rows))})
        return
    conn.execute(_upsert(conn.dialect.name), list(rows))


@cache
def _upsert(dialect_name: str) -> Insert:
    statement = (postgresql if dialect_name == "postgresql" else sqlite).insert(delivery_state)
    upserting: Insert = statement.on_conflict_do_update(
        index_elements=["delivery_id"],
        set_={
            c.name: statement.excluded[c.name]
            for c in delivery_state.columns
            if c.name != "delivery_id"
        },
    )
    return upserting


@cache
def _upsert_from_json() -> Insert:
    columns = list(delivery_state.columns)
    records = (
        func.json_to_recordset(cast(bindparam("rows", type_=Text), postgresql.JSON))
        .table_valued(*[Column(c.name, c.type) for c in columns])
        .render_derived(with_types=True)
    )
    statement = postgresql.insert(delivery_state).from_select(
        [c.name for c in columns], select(*[records.c[c.name] for c in columns])
    )
    return statement.on_conflict_do_update(
        index_elements=["delivery_id"],
        set_={c.name: statement.excluded[c.name] for c in columns if c.name != "delivery_id"},
    )
