"""Meta's per-account send rates, counted per second and shared by every dispatcher, and
the reusable attachment ids of each account's URLs (`infrastructure/send_limits.py`).

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only what is missing: a database whose revision was lost is upgraded from the start.
    conn = op.get_bind()
    schema = (
        str(conn.execute(sa.text("SELECT current_schema()")).scalar_one())
        if conn.dialect.name == "postgresql"
        else None
    )
    existing = set(sa.inspect(conn).get_table_names(schema=schema))
    if "send_rate" not in existing:
        _send_rate()
    if "reusable_attachments" not in existing:
        _reusable_attachments()


def _send_rate() -> None:
    op.create_table(
        "send_rate",
        sa.Column("ig_account_id", sa.String(32), primary_key=True),
        sa.Column("send_class", sa.String(16), primary_key=True),
        sa.Column("second", sa.BigInteger, primary_key=True),
        sa.Column("sends", sa.Integer, nullable=False),
    )


def _reusable_attachments() -> None:
    op.create_table(
        "reusable_attachments",
        sa.Column("ig_account_id", sa.String(32), primary_key=True),
        sa.Column("url_digest", sa.String(64), primary_key=True),
        sa.Column("media_type", sa.String(16), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("attachment_id", sa.String(64), nullable=False),
        sa.Column("uploaded_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reusable_attachments")
    op.drop_table("send_rate")
