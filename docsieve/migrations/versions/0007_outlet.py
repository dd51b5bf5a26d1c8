"""Records keep the outlet (publisher) a batch names for each document, beside where it was read.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("records", sa.Column("outlet", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("records", "outlet")
