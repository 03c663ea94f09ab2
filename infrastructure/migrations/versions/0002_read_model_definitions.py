"""Each read model's position records the definition version its rows were built by.

`SqlView.version` (projections/view.py) is raised when a read model's tables or what its
projection writes change; a stored version that differs means the read model must be
rebuilt (`dmledger projections rebuild`). Rows from before this revision were built by
version 1 of every read model.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "projection_tracking",
        sa.Column("definition_version", sa.Integer, nullable=False, server_default="1"),
    )


def downgrade() -> None:
    with op.batch_alter_table("projection_tracking") as table:
        table.drop_column("definition_version")
