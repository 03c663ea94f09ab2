"""The table of content data keys beside the events (`infrastructure/content_keys.py`).

One row per message's data key, wrapped by the secret keys; deleting a row is how content
is shredded (unsend, erasure, retention). The library names the events table
`dmledger_events` on PostgreSQL and `stored_events` on SQLite; the key table takes its
name with `_content_keys`. `IF NOT EXISTS`: a database made by a build of dmledger that
created this table itself is adopted as it is.

Revision ID: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    table = "dmledger_events_content_keys" if postgres else "stored_events_content_keys"
    text, integer = ("text", "bigint") if postgres else ("TEXT", "INTEGER")
    op.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (key_id {text} PRIMARY KEY, "
        f"conversation_id {text} NOT NULL, mid {text}, recorded_at {integer} NOT NULL, "
        f"wrapped {text} NOT NULL)"
    )
    op.execute(f"CREATE INDEX IF NOT EXISTS {table}_conversation ON {table} (conversation_id, mid)")


def downgrade() -> None:
    raise NotImplementedError("data keys are not dropped by a downgrade: restore a backup instead")
