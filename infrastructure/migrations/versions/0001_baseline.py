"""The tables as the release before migrations made them, created where missing.

A database made by that release has them already (`create_all`, `CREATE TABLE IF NOT
EXISTS`): this revision creates only what is missing, and adds the chain's
`previous_position` where an older database lacks it, so that `dmledger db upgrade`
adopts such a database as it is, and a new one gets every table.

Revision ID: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    existing = set(sa.inspect(conn).get_table_names(schema=_schema(conn)))

    def create(
        name: str, *columns: sa.Column[Any], indexes: tuple[tuple[str, ...], ...] = ()
    ) -> None:
        if name not in existing:
            op.create_table(name, *columns)
        # An index added after a table was made (delivery_queue_by_account) is made here.
        for index_name, *names in indexes:
            op.create_index(index_name, name, list(names), if_not_exists=True)

    create(
        "delivery_state",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("leased_until", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("history", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    create(
        "delivery_queue",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("ig_account_id", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(36), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        indexes=(
            ("delivery_queue_due", "channel", "position"),
            ("delivery_queue_by_conversation", "conversation_id", "channel", "position"),
            ("delivery_queue_by_account", "ig_account_id", "channel"),
        ),
    )
    create(
        "delivery_cursors",
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    create(
        "api_key_usage",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("last_used_at", sa.BigInteger, nullable=False),
    )
    create(
        "projection_tracking",
        sa.Column("projection", sa.String(100), primary_key=True),
        sa.Column("application_name", sa.String(100), nullable=False),
        sa.Column("notification_id", sa.BigInteger, nullable=False),
    )
    create(
        "projection_failures",
        sa.Column("projection", sa.String(100), primary_key=True),
        sa.Column("notification_id", sa.BigInteger, primary_key=True),
        sa.Column("application_name", sa.String(100), nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("originator_id", sa.String(36), nullable=False),
        sa.Column("originator_version", sa.BigInteger, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("parked_at", sa.BigInteger, nullable=False),
        sa.Column("retried_at", sa.BigInteger),
    )
    _chain(conn, existing)


def _chain(conn: sa.Connection, existing: set[str]) -> None:
    """The hash chain beside the events table (`infrastructure/chained_recorders.py`):
    the library names that table `dmledger_events` on PostgreSQL, `stored_events` on
    SQLite."""
    postgres = conn.dialect.name == "postgresql"
    chain = "dmledger_events_chain" if postgres else "stored_events_chain"
    if postgres:
        op.execute(
            f"CREATE TABLE IF NOT EXISTS {chain} ("
            "originator_id uuid NOT NULL, "
            "originator_version bigint NOT NULL, "
            "notification_id bigint NOT NULL, "
            "key_id text NOT NULL, "
            "hash bytea NOT NULL, "
            "previous_position bigint, "
            "PRIMARY KEY (originator_id, originator_version))"
        )
        genesis_types = ("bigint", "bigint", "text", "bytea")
    else:
        op.execute(
            f"CREATE TABLE IF NOT EXISTS {chain} ("
            "originator_id TEXT, "
            "originator_version INTEGER, "
            "notification_id INTEGER NOT NULL, "
            "key_id TEXT NOT NULL, "
            "hash BLOB NOT NULL, "
            "previous_position INTEGER, "
            "PRIMARY KEY (originator_id, originator_version)) "
            "WITHOUT ROWID"
        )
        genesis_types = ("INTEGER", "INTEGER", "TEXT", "BLOB")
    if chain in existing:
        # A chain table made before the log chain existed has no previous_position.
        columns = {c["name"] for c in sa.inspect(conn).get_columns(chain, schema=_schema(conn))}
        if "previous_position" not in columns:
            op.add_column(chain, sa.Column("previous_position", sa.BigInteger))
    op.execute(f"CREATE INDEX IF NOT EXISTS {chain}_position ON {chain} (notification_id)")
    began, log_began, key_id, digest = genesis_types
    op.execute(
        f"CREATE TABLE IF NOT EXISTS {chain}_genesis ("
        f"began_at {began} PRIMARY KEY, "
        f"log_began_at {log_began} NOT NULL, "
        f"key_id {key_id} NOT NULL, "
        f"hash {digest} NOT NULL)"
    )


def _schema(conn: sa.Connection) -> str | None:
    if conn.dialect.name != "postgresql":
        return None
    return str(conn.execute(sa.text("SELECT current_schema()")).scalar_one())


def downgrade() -> None:
    raise NotImplementedError("the first revision is not undone: drop the database instead")
