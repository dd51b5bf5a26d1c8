"""SQLite stores: every stored time in SQLAlchemy's one format (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), so
times compare as strings. Rows written before commit 7224661 (and those stamped by SQLite's own
CURRENT_TIMESTAMP) have whole seconds without a fraction, or an offset; a cursor or a ``since`` bound of the
same second compared after them and skipped them. PostgreSQL keeps times as times: nothing to do.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from datetime import UTC, datetime

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = {
    "stories": ("created_at", "changed_at"),
    "records": ("created_at", "changed_at"),
    "contains": ("created_at",),
}
FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            odd = bind.exec_driver_sql(
                f"SELECT rowid, {column} FROM {table} WHERE {column} IS NOT NULL AND length({column}) != 26"
            ).fetchall()
            for rowid, value in odd:
                stamp = datetime.fromisoformat(str(value))
                stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
                bind.exec_driver_sql(
                    f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (stamp.strftime(FORMAT), rowid)
                )


def downgrade() -> None:
    pass  # the times stay in the one format, which every version reads
