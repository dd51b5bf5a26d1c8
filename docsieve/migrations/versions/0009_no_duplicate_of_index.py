"""Records lose the index on duplicate_of: nothing reads by it since stories (members are found by
story_id), and every insert paid for it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_records_duplicate_of", "records")


def downgrade() -> None:
    op.create_index("ix_records_duplicate_of", "records", ["duplicate_of"])
