"""PostgreSQL: records' text compressed with lz4 (where the server has it), shingles and index keys
stored uncompressed (hash values never compress; pglz spent 40% of a batch's COPY trying, see
docs/benchmarks.md). Changes how new values are stored; existing rows stay as they are. Nothing to do
on SQLite.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LZ4_COLUMNS = ("source", "title", "text", "images")
RAW_COLUMNS = ("shingles", "index_keys")


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for column in RAW_COLUMNS:
        op.execute(f"ALTER TABLE records ALTER COLUMN {column} SET STORAGE EXTERNAL")
    lz4 = conn.exec_driver_sql(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    ).scalar()
    if lz4:
        for column in LZ4_COLUMNS:
            op.execute(f"ALTER TABLE records ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for column in RAW_COLUMNS:
        op.execute(f"ALTER TABLE records ALTER COLUMN {column} SET STORAGE EXTENDED")
    if int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) >= 140000:  # compression: 14 and later
        for column in LZ4_COLUMNS:
            op.execute(f"ALTER TABLE records ALTER COLUMN {column} SET COMPRESSION default")
