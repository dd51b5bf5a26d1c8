"""The template counts' snapshots keep each bucket's latest day and how many of its ids are of other days
(``DAY_SNAPSHOT``, docsieve/templates.py): the mark, the size of the compressed days, the days (one uint32 a bucket:
the latest day in the top half, the ids of other days in the bottom), then the snapshot as before. Nothing to change
on the way up (a snapshot of 0016 reads as latest days with no ids of other days, where it kept a day). A revision of
its own, so that a docsieve of 0016, which cannot read these snapshots, refuses the store; downgrading
writes each snapshot as 0016 kept it: a bucket's day where all its ids were of it, else spread. The layout is
templates.py's, kept here as it was at this revision.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

import numpy as np
import sqlalchemy as sa
import zstandard
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

DAY_ROW = b"DSD1"
DAY_SNAPSHOT = b"DSD2"
WORD_ROW = b"DSW1"
SPREAD = 0xFFFF

snapshots = sa.table("shingle_count_snapshots", sa.column("seq", sa.BigInteger), sa.column("counts", sa.LargeBinary))


def _sized(blob: bytes) -> tuple[bytes, bytes]:
    size = int(np.frombuffer(blob, dtype=np.uint32, count=1)[0])
    return blob[4 : 4 + size], blob[4 + size :]


def _snapshot_of_0016(blob: bytes) -> bytes:
    if not blob.startswith(DAY_SNAPSHOT) or len(blob) < 8:
        return blob
    days, rest = _sized(blob[4:])
    shingles = _sized(rest[4:])[0] if rest.startswith(WORD_ROW) else rest
    zstd = zstandard.ZstdDecompressor()
    counts = np.frombuffer(zstd.decompress(shingles), dtype=np.uint16)
    held = np.frombuffer(zstd.decompress(days), dtype=np.uint32)
    latest, others = held >> 16, held & 0xFFFF
    of_one_day = (others == 0) & (latest != 0) & (latest != SPREAD)
    kept = np.where(of_one_day, latest, np.where(counts > 0, SPREAD, 0)).astype(np.uint16)
    old_days = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(kept.tobytes())
    return DAY_ROW + np.uint32(len(old_days)).tobytes() + old_days + rest


def upgrade() -> None:
    pass


def downgrade() -> None:
    conn = op.get_bind()
    for seq in conn.scalars(sa.select(snapshots.c.seq)).all():  # one at a time: a snapshot is megabytes
        blob = bytes(conn.execute(sa.select(snapshots.c.counts).where(snapshots.c.seq == seq)).scalar_one())
        if (old := _snapshot_of_0016(blob)) is not blob:
            conn.execute(snapshots.update().where(snapshots.c.seq == seq).values(counts=old))
