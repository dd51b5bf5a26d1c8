"""Records, with their fingerprints and candidate-index keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(20), nullable=False, unique=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("duplicate_of", sa.String(20), nullable=True),
        sa.Column("similarity", sa.Float, nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("images", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("published", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("shingles", sa.LargeBinary, nullable=True),
        sa.Column("index_keys", sa.LargeBinary, nullable=True),
    )
    op.create_index("ix_records_content_hash", "records", ["content_hash"])
    op.create_index("ix_records_duplicate_of", "records", ["duplicate_of"])
    op.create_index("ix_records_status", "records", ["status"])


def downgrade() -> None:
    op.drop_table("records")
