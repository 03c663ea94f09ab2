"""The index of the keys conversations have recorded (`infrastructure/item_keys.py`),
filled from the log stored before it.

A conversation now keeps only its most recent keys (`domain/recorded_keys.py`) and asks
this table about older ones, so a log stored before it must be indexed here, or a
redelivery of an old message would be stored again: every conversation event that
carries a `key` gets its row, as the recorders write it (a digest of the key, and Meta's
time for a message). The events' `key` and `sent_at` are never sealed content, so they
are read from the stored JSON as it is. `IF NOT EXISTS` and `ON CONFLICT`: the event
store may have made the table already (the library's `create_table`, run first by
`dmledger db upgrade`), and rows written by this release are the same rows.

Run it with the writers of an older release stopped: they do not write this table.

Revision ID: 0006
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Stored topics (a stored schema: these never change) of the conversation events whose
# key records Meta's time of the message with it.
_TIMED = ("dmledger:Conversation.MessageReceived", "dmledger:Conversation.MessageEchoed")
_CHUNK = 5_000


def upgrade() -> None:
    conn = op.get_bind()
    postgres = conn.dialect.name == "postgresql"
    events = "dmledger_events" if postgres else "stored_events"
    table = f"{events}_item_keys"
    if postgres:
        op.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (originator_id uuid NOT NULL, "
            "key_digest bytea NOT NULL, value bigint, PRIMARY KEY (originator_id, key_digest))"
        )
    else:
        op.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (originator_id TEXT NOT NULL, "
            "key_digest BLOB NOT NULL, value INTEGER, "
            "PRIMARY KEY (originator_id, key_digest)) WITHOUT ROWID"
        )
    if not sa.inspect(conn).has_table(events, schema=_schema(conn) if postgres else None):
        return  # a new database: the recorders write every row
    _fill(conn, events, table, postgres=postgres)


def _schema(conn: sa.Connection) -> str:
    return str(conn.execute(sa.text("SELECT current_schema()")).scalar_one())


def _fill(conn: sa.Connection, events: str, table: str, *, postgres: bool) -> None:
    position = "notification_id" if postgres else "rowid"
    # Our own table names and constants: the f-strings build no injection.
    select = sa.text(
        f"SELECT {position} AS position, originator_id, topic, state FROM {events} "  # noqa: S608
        f"WHERE {position} > :after AND topic LIKE 'dmledger:Conversation.%' "
        f"ORDER BY {position} LIMIT {_CHUNK}"
    )
    insert = sa.text(
        f"INSERT INTO {table} (originator_id, key_digest, value) "  # noqa: S608
        "VALUES (:originator_id, :key_digest, :value) ON CONFLICT DO NOTHING"
    )
    after = 0
    while True:
        rows = conn.execute(select, {"after": after}).fetchall()
        if not rows:
            return
        after = rows[-1].position
        found = [row for row in (_row(r, postgres=postgres) for r in rows) if row is not None]
        if found:
            conn.execute(insert, found)


def _row(stored: Any, *, postgres: bool) -> dict[str, Any] | None:
    state = json.loads(bytes(stored.state))
    key = state.get("key")
    if not isinstance(key, str):
        return None
    originator = uuid.UUID(str(stored.originator_id))
    return {
        "originator_id": originator if postgres else originator.hex,
        "key_digest": hashlib.sha256(key.encode()).digest()[:16],
        "value": _time(state.get("sent_at")) if stored.topic in _TIMED else None,
    }


def _time(sent_at: Any) -> int | None:
    """A time the index can hold (signed 64 bits), else None (as the code's `recorded_key`:
    a poison event of an old release must not stop the upgrade)."""
    if isinstance(sent_at, int) and not isinstance(sent_at, bool) and -(2**63) <= sent_at < 2**63:
        return sent_at
    return None


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    table = "dmledger_events_item_keys" if postgres else "stored_events_item_keys"
    op.execute(f"DROP TABLE IF EXISTS {table}")
