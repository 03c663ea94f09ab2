"""A partial index of the dead deliveries, for the metrics' count (`delivery_state_dead`,
`infrastructure/delivery_tables.py`): a scrape must not read every delivery ever made.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS delivery_state_dead ON delivery_state (delivery_id) "
        "WHERE status = 'dead'"
    )


def downgrade() -> None:
    op.drop_index("delivery_state_dead", table_name="delivery_state")
