"""Stories keep the sequence number of the batch that last changed them (its last record's seq). A batch decided
before the write lock and met under it by others' writes is decided again only where it read a story they
changed (``Pipeline.store_prepared``); a time cannot say that, as a transaction's clock is read before it
commits. Rows of older versions have none: nobody decides against a batch that old.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "stories", sa.Column("changed_seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=True)
    )
    op.create_index("ix_stories_changed_seq", "stories", ["changed_seq"])


def downgrade() -> None:
    op.drop_index("ix_stories_changed_seq", table_name="stories")
    op.drop_column("stories", "changed_seq")
