"""Stories as data: every stored record belongs to a story with one canonical record; copies keep
their overlap with that canonical; roundups keep what they contain; takedowns leave an audit row;
template boilerplate is learned in shingle counts. ``published`` gets a UTC timestamp beside its text.

Existing records become stories as they were linked: a canonical record and its copies. Their overlap
with the canonical stays empty (it was measured against whichever copy matched, not the canonical).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("story_id", sa.String(20), nullable=True))
        batch.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("jaccard", sa.Float, nullable=True))
        batch.add_column(sa.Column("containment", sa.Float, nullable=True))
        batch.add_column(
            sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())
        )
    op.create_index("ix_records_story_id", "records", ["story_id"])
    op.create_index("ix_records_changed_at", "records", ["changed_at"])
    op.create_table(
        "stories",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("canonical_id", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_stories_changed_at", "stories", ["changed_at"])
    op.create_table(
        "contains",
        sa.Column("record_id", sa.String(20), primary_key=True),
        sa.Column("story_id", sa.String(20), primary_key=True),
        sa.Column("containment", sa.Float, nullable=True),
        sa.Column("roundup", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_contains_story_id", "contains", ["story_id"])
    op.create_table(
        "deletions",
        sa.Column("seq", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(20), nullable=False),
        sa.Column("story_id", sa.String(20), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "shingle_counts",
        sa.Column("seq", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("counts", sa.LargeBinary, nullable=False),
    )
    conn = op.get_bind()
    # A story per canonical record, named after it; copies join their canonical's.
    conn.execute(sa.text("UPDATE records SET changed_at = created_at"))
    conn.execute(sa.text("UPDATE records SET story_id = COALESCE(duplicate_of, id) WHERE status != 'rejected'"))
    conn.execute(
        sa.text(
            "INSERT INTO stories (id, canonical_id, created_at, changed_at) "
            "SELECT id, id, created_at, created_at FROM records WHERE status = 'canonical'"
        )
    )
    _parse_published(conn)


def _parse_published(conn: sa.Connection) -> None:
    from docsieve.published import parse_published

    rows = conn.execute(sa.text("SELECT seq, published FROM records WHERE published IS NOT NULL")).all()
    update = sa.text("UPDATE records SET published_at = :at WHERE seq = :seq")
    values = [{"seq": seq, "at": at} for seq, text in rows if (at := parse_published(text)) is not None]
    for start in range(0, len(values), 5000):
        conn.execute(update, values[start : start + 5000])


def downgrade() -> None:
    for table in ("shingle_counts", "deletions", "contains", "stories"):
        op.drop_table(table)
    op.drop_index("ix_records_changed_at", "records")
    op.drop_index("ix_records_story_id", "records")
    with op.batch_alter_table("records") as batch:
        for column in ("changed_at", "containment", "jaccard", "published_at", "story_id"):
            batch.drop_column(column)
