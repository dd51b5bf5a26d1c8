"""A story found to be one with another (a story split in two by the order its copies came in) gives its records to
the other and keeps its row, saying where they went (``merged_into``): a consumer that knew it learns where it went
(``export --stories --since``, ``GET /v1/stories``), and a decision that read it, made before the write lock, sees it
changed (``changed_seq``). Downgrading takes those rows out, as a store of 0017 has no story without records.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stories", sa.Column("merged_into", sa.String(20), nullable=True))
    op.create_index("ix_stories_merged_into", "stories", ["merged_into"])


def downgrade() -> None:
    op.execute("DELETE FROM stories WHERE merged_into IS NOT NULL")
    op.drop_index("ix_stories_merged_into", table_name="stories")
    op.drop_column("stories", "merged_into")
