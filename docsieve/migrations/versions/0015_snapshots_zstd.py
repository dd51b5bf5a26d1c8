"""The template counts' snapshots compressed with zstd (with its checksum), not zlib: 2.5-3.5x quicker to write
and to read at a grown store (docs/benchmarks.md). A revision of its own, so that a docsieve of 0014, which reads
zlib alone, refuses the store (as it refuses any store a newer docsieve migrated) rather than failing the first
batch that reads a snapshot; downgrading gives the snapshots back in zlib. The layout is templates.py's, kept here
as it was at this revision.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

import zlib
from collections.abc import Callable

import numpy as np
import sqlalchemy as sa
import zstandard
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# A snapshot with words: this mark, the shingle part's length (uint32), the shingle part, the word part; without
# words, the shingle part alone (a zlib stream starts with 0x78, a zstd frame with ZSTD_FRAME: never the mark).
WORD_ROW = b"DSW1"
ZSTD_FRAME = b"\x28\xb5\x2f\xfd"

snapshots = sa.table("shingle_count_snapshots", sa.column("seq", sa.BigInteger), sa.column("counts", sa.LargeBinary))


def _counters(part: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(part) if part.startswith(ZSTD_FRAME) else zlib.decompress(part)


def _to_zstd(counters: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=1, write_checksum=True).compress(counters)


def _to_zlib(counters: bytes) -> bytes:
    return zlib.compress(counters, 1)


def _recompressed(blob: bytes, compress: Callable[[bytes], bytes]) -> bytes:
    if blob.startswith(WORD_ROW) and len(blob) >= 8:
        size = int(np.frombuffer(blob, dtype=np.uint32, count=1, offset=4)[0])
        if 8 + size <= len(blob):
            shingles, words = compress(_counters(blob[8 : 8 + size])), compress(_counters(blob[8 + size :]))
            return WORD_ROW + np.uint32(len(shingles)).tobytes() + shingles + words
    return compress(_counters(blob))


def _each(compress: Callable[[bytes], bytes]) -> None:
    """Every snapshot (a store keeps the newest: some 10 MB) compressed again, one at a time."""
    conn = op.get_bind()
    for seq in conn.scalars(sa.select(snapshots.c.seq)).all():
        blob = conn.execute(sa.select(snapshots.c.counts).where(snapshots.c.seq == seq)).scalar_one()
        conn.execute(
            snapshots.update().where(snapshots.c.seq == seq).values(counts=_recompressed(bytes(blob), compress))
        )


def upgrade() -> None:
    _each(_to_zstd)


def downgrade() -> None:
    _each(_to_zlib)
