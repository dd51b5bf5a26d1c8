"""The template counts' rows and snapshots carry the publication days of the texts counted (``DAY_ROW``,
docsieve/templates.py): a row starts with the mark, the number of texts, their days and their sizes; a snapshot
with the mark, the size of the compressed days, and the days. Nothing to change on the way up (rows and snapshots
without days read as spread). A revision of its own, so that a docsieve of 0015, which would count a row's header
as shingle ids and fail to read a snapshot, refuses the store; downgrading takes the days off every row and
snapshot. The layout is templates.py's, kept here as it was at this revision.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

DAY_ROW = b"DSD1"

rows = sa.table("shingle_counts", sa.column("seq", sa.BigInteger), sa.column("counts", sa.LargeBinary))
snapshots = sa.table("shingle_count_snapshots", sa.column("seq", sa.BigInteger), sa.column("counts", sa.LargeBinary))


def _row_without_days(blob: bytes) -> bytes:
    if not blob.startswith(DAY_ROW) or len(blob) < 8:
        return blob
    texts = int(np.frombuffer(blob, dtype=np.uint32, count=1, offset=4)[0])
    end = 8 + 8 * texts
    if end > len(blob):
        return blob
    sizes = np.frombuffer(blob, dtype=np.uint32, count=texts, offset=8 + 4 * texts)
    return blob[end:] if int(sizes.sum()) * 4 <= len(blob) - end else blob  # else ids alone after all


def _snapshot_without_days(blob: bytes) -> bytes:
    if not blob.startswith(DAY_ROW) or len(blob) < 8:
        return blob
    return blob[8 + int(np.frombuffer(blob, dtype=np.uint32, count=1, offset=4)[0]) :]


def upgrade() -> None:
    pass


def downgrade() -> None:
    conn = op.get_bind()
    for table, strip in ((rows, _row_without_days), (snapshots, _snapshot_without_days)):
        for seq in conn.scalars(sa.select(table.c.seq)).all():  # one at a time: a snapshot is megabytes
            blob = bytes(conn.execute(sa.select(table.c.counts).where(table.c.seq == seq)).scalar_one())
            if (bare := strip(blob)) is not blob:
                conn.execute(table.update().where(table.c.seq == seq).values(counts=bare))
